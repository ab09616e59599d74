package correlate

// ScanKeys calls fn with every key of the correlator's committed state, in
// order (a rebuild of stale partitions lists them; see pipeline/rebuild.go).
func (c *Correlator) ScanKeys(fn func(key []byte) error) error {
	it, err := c.store.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key()); err != nil {
			return err
		}
	}
	return it.Error()
}
