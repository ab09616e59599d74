package correlate

// ScanKeys calls fn with every key of the correlator's committed state, in
// order (a rebuild of stale partitions lists them; see pipeline/rebuild.go).
func (c *Correlator) ScanKeys(fn func(key []byte) error) error { return c.store.ScanKeys(fn) }
