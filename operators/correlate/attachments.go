package correlate

import (
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// AttachmentFact is one delivered copy of an email attachment (an
// EmailAttachmentInfo row): which file reached which recipient in which
// message. Correlation does not use it; automated response keeps an index
// of them to remove every copy of a file once it is found malicious.
type AttachmentFact struct {
	SHA256           string    `json:"sha256"`
	NetworkMessageID string    `json:"networkMessageId"`
	Recipient        string    `json:"recipient"`
	RecipientID      string    `json:"recipientObjectId,omitempty"`
	FileName         string    `json:"fileName,omitempty"`
	Time             time.Time `json:"time"`
}

// extractAttachments reads the copies of an EmailAttachmentInfo batch,
// once each per batch; rows without a hash, message or recipient name no
// copy that could be removed.
func extractAttachments(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int) {
	sha, nmid, to, oid, name := str(rec, "SHA256"), str(rec, "NetworkMessageId"), str(rec, "RecipientEmailAddress"), str(rec, "RecipientObjectId"), str(rec, "FileName")
	seen := map[[3]string]bool{}
	for i := 0; i < n; i++ {
		h, m, r := strings.ToLower(sha.Value(i)), nmid.Value(i), strings.ToLower(to.Value(i))
		if h == "" || m == "" || r == "" || ts.IsNull(i) || seen[[3]string{h, m, r}] {
			continue
		}
		seen[[3]string{h, m, r}] = true
		f.Attachments = append(f.Attachments, AttachmentFact{SHA256: h, NetworkMessageID: m, Recipient: r,
			RecipientID: oid.Value(i), FileName: name.Value(i), Time: ts.Value(i)})
	}
}

// FileFact is a file on a device: the SHA256 of a DeviceFileEvents row (the
// file written) or of a DeviceProcessEvents row (the image run), with the
// device. Automated response keeps them to quarantine a file wherever it
// is once it is found malicious; correlation does not use them.
type FileFact struct {
	SHA256     string    `json:"sha256"`
	DeviceID   string    `json:"deviceId"`
	DeviceName string    `json:"deviceName,omitempty"`
	Time       time.Time `json:"time"`
}

// extractFiles reads the files of a DeviceFileEvents or DeviceProcessEvents
// batch, once per file and device per batch (the latest time); rows
// without a device id name nothing a quarantine could act on.
func extractFiles(f *Facts, rec arrow.Record, ts normalize.TimeColumn, n int) {
	sha, dev, name := str(rec, "SHA256"), str(rec, "DeviceId"), str(rec, "DeviceName")
	at := map[[2]string]int{}
	for i := 0; i < n; i++ {
		h, d := strings.ToLower(sha.Value(i)), strings.ToLower(dev.Value(i))
		if h == "" || d == "" || ts.IsNull(i) {
			continue
		}
		k := [2]string{h, d}
		if j, ok := at[k]; ok {
			if t := ts.Value(i); t.After(f.Files[j].Time) {
				f.Files[j].Time = t
			}
			continue
		}
		at[k] = len(f.Files)
		f.Files = append(f.Files, FileFact{SHA256: h, DeviceID: d, DeviceName: name.Value(i), Time: ts.Value(i)})
	}
}
