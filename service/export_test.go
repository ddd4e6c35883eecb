package service

import "github.com/labstack/echo/v4"

// Routes are the HTTP server's registered routes (for the OpenAPI test).
func (s *Service) Routes() []*echo.Route { return s.http.Echo().Routes() }
