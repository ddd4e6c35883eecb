package httpapi

import (
	"net/http"
	"net/http/pprof"

	"github.com/labstack/echo/v4"
)

// RegisterProfiling serves the Go runtime's profiles under /debug/pprof/ behind the API key
// (go tool pprof -http=: 'http://host/debug/pprof/profile?seconds=20' with the Authorization
// header, or ingest-load -cpuprofile). They are mounted on the service's own listener rather
// than a separate admin one so there is no second port to secure; the key is what guards them.
//
// The handlers come from net/http/pprof but are not registered on http.DefaultServeMux: that
// package's init does so, and nothing in ingest serves DefaultServeMux.
func (s *Server) RegisterProfiling(keys []string) {
	g := s.echo.Group("/debug/pprof", RequireAPIKey(keys))
	g.GET("", echo.WrapHandler(http.RedirectHandler("/debug/pprof/", http.StatusMovedPermanently)))
	g.GET("/", echo.WrapHandler(http.HandlerFunc(pprof.Index)))
	g.GET("/cmdline", echo.WrapHandler(http.HandlerFunc(pprof.Cmdline)))
	g.GET("/profile", echo.WrapHandler(http.HandlerFunc(pprof.Profile)))
	g.GET("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	g.POST("/symbol", echo.WrapHandler(http.HandlerFunc(pprof.Symbol)))
	g.GET("/trace", echo.WrapHandler(http.HandlerFunc(pprof.Trace)))
	// heap, allocs, goroutine, block, mutex, threadcreate: the named runtime profiles.
	g.GET("/:name", func(c echo.Context) error {
		pprof.Handler(c.Param("name")).ServeHTTP(c.Response(), c.Request()) // 404 for an unknown name
		return nil
	})
}
