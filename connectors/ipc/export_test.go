package ipc

import (
	"bytes"

	arrowipc "github.com/apache/arrow/go/v17/arrow/ipc"

	"github.com/stitch-xdr/stitch/operators/normalize"
)

// arrowipcWriter writes b as an uncompressed stream into buf (benchmark).
func arrowipcWriter(buf *bytes.Buffer, b normalize.Batch) error {
	w := arrowipc.NewWriter(buf, arrowipc.WithSchema(b.Record.Schema()))
	if err := w.Write(b.Record); err != nil {
		return err
	}
	return w.Close()
}
