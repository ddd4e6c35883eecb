package webhooks

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ingest-dev/ingest/config"
	"github.com/ingest-dev/ingest/events"
	"github.com/ingest-dev/ingest/httpapi"
)

// API is the operators' view of the subscriptions, behind the API key:
//
//	GET  /v1/subscriptions                                          states (active, disabled), pending counts
//	POST /v1/subscriptions/{name}/enable                            clear a 410's disabled mark
//	POST /v1/subscriptions/{name}/replay?since=2h                   send again since then, in order, same webhook-ids
//	GET  /v1/subscriptions/{name}/deliveries/{event_id}             the recorded attempts of one delivery
//	GET  /v1/subscriptions/{name}/dead-letters                      dead letters still in the stream
//	POST /v1/subscriptions/{name}/dead-letters/{event_id}/redeliver deliver one dead letter again, now
type API struct {
	d    *Deliverer
	keys []string
}

// NewAPI returns the API over d.
func NewAPI(d *Deliverer, apiKeys []string) *API { return &API{d: d, keys: apiKeys} }

// Register adds the routes.
func (a *API) Register(e *echo.Echo) {
	g := e.Group("/v1/subscriptions", httpapi.RequireAPIKey(a.keys))
	g.GET("", a.list)
	g.POST("/:name/enable", a.enable)
	g.POST("/:name/replay", a.replay)
	g.GET("/:name/deliveries/:event_id", a.attempts)
	g.GET("/:name/dead-letters", a.deadLetters)
	g.POST("/:name/dead-letters/:event_id/redeliver", a.redeliver)
}

func (a *API) list(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"subscriptions": a.d.Statuses(c.Request().Context())})
}

func (a *API) enable(c echo.Context) error {
	if err := a.d.Enable(c.Request().Context(), c.Param("name")); err != nil {
		return problem(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"subscription": c.Param("name"), "state": "active"})
}

func (a *API) replay(c echo.Context) error {
	since, err := ParseSince(c.QueryParam("since"), time.Now())
	if err != nil {
		return httpapi.NewProblem(http.StatusBadRequest, "%v", err)
	}
	res, err := a.d.Replay(c.Request().Context(), c.Param("name"), since)
	if err != nil {
		return problem(err)
	}
	return c.JSON(http.StatusOK, res)
}

func (a *API) attempts(c echo.Context) error {
	rec, err := a.d.Attempts(c.Request().Context(), c.Param("name"), c.Param("event_id"))
	if err != nil {
		return problem(err)
	}
	return c.JSON(http.StatusOK, rec)
}

func (a *API) deadLetters(c echo.Context) error {
	list, err := a.d.DeadLetters(c.Request().Context(), c.Param("name"))
	if err != nil {
		return problem(err)
	}
	if list == nil {
		list = []events.DeliveryFailedData{}
	}
	return c.JSON(http.StatusOK, map[string]any{"dead_letters": list})
}

func (a *API) redeliver(c echo.Context) error {
	err := a.d.Redeliver(c.Request().Context(), c.Param("name"), c.Param("event_id"))
	if err != nil {
		return problem(err)
	}
	return c.JSON(http.StatusOK, map[string]string{"subscription": c.Param("name"), "event_id": c.Param("event_id"), "result": "delivered"})
}

func problem(err error) error {
	var de *DeliveryError
	switch {
	case errors.Is(err, ErrUnknownSubscription), errors.Is(err, ErrNoRecord), errors.Is(err, ErrNoDeadLetter):
		return httpapi.NewProblem(http.StatusNotFound, "%v", err)
	case errors.Is(err, ErrDisabled):
		return httpapi.NewProblem(http.StatusConflict, "%v", err)
	case errors.As(err, &de):
		return httpapi.NewProblem(http.StatusBadGateway, "%v", err)
	}
	return err
}

// ParseSince reads a replay's start: a duration back from now ("2h", "3d") or a time (RFC 3339).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, errors.New("since is required: a duration back from now (2h, 3d) or a time (2026-01-31T08:00:00Z)")
	}
	if d, err := config.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("since " + s + " is neither a duration (2h, 3d) nor a time (2026-01-31T08:00:00Z)")
	}
	return t, nil
}
