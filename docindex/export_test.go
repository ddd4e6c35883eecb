package docindex

// Read is how many messages the index read from the stream since it was opened: a restart that
// repeats or skips shows in it.
func (ix *Index) Read() uint64 { return ix.prog.read.Load() }
