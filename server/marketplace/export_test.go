package marketplace

import "github.com/prometheus/client_golang/prometheus"

// Rejected exposes the rate-limit rejection counter to the tests.
func (s *Service) Rejected() prometheus.Counter { return s.rejected }
