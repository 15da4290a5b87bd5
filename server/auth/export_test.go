package auth

// VerifiedTokens is how many access tokens the verified cache holds, for
// tests that need to know a request was served from it.
func (s *Service) VerifiedTokens() int { return s.keys.verified.len() }
