package marketplace

// NewLicenseKey returns a fresh license key in the marketplace's format, for
// other areas (the Discord bot) that whitelist players in the same systems:
// one format and one generator for every key a buyer may be given.
func NewLicenseKey() string { return newLicenseKey() }

// NormalizeLicenseKey is the form a license key is blind-indexed in: what a
// buyer pastes, with surrounding spaces removed and letters upper-cased.
func NormalizeLicenseKey(k string) string { return normalizeLicenseKey(k) }
