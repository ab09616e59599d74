package correlate

import (
	"strings"
	"time"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/stitch-xdr/stitch/operators/normalize"
)

// MailFact is half of a delivered message that carries URLs: a recipient
// of it (an EmailEvents row of a message whose UrlCount is not zero) or a
// URL in it (an EmailUrlInfo row, which names no recipient). Correlation
// does not use it; automated response joins the halves by
// NetworkMessageId to soft-delete every copy of a message that carries a
// blocked URL, whichever half comes first.
type MailFact struct {
	NetworkMessageID string    `json:"networkMessageId"`
	Recipient        string    `json:"recipient,omitempty"`
	URL              string    `json:"url,omitempty"`
	Time             time.Time `json:"time"`
}

// extractMail reads the halves of an EmailEvents or EmailUrlInfo batch,
// once each per batch (the latest time).
func extractMail(f *Facts, table string, rec arrow.Record, ts normalize.TimeColumn, n int) {
	nmid := str(rec, "NetworkMessageId")
	var other normalize.StringColumn
	var urls normalize.Int64Column
	if table == "EmailUrlInfo" {
		other = str(rec, "Url")
	} else {
		other, urls = str(rec, "RecipientEmailAddress"), normalize.Int64s(rec, "UrlCount")
	}
	at := map[[2]string]int{}
	for i := 0; i < n; i++ {
		m, v := nmid.Value(i), strings.TrimSpace(other.Value(i))
		if m == "" || v == "" || ts.IsNull(i) || table != "EmailUrlInfo" && !urls.IsNull(i) && urls.Value(i) == 0 {
			continue
		}
		if table != "EmailUrlInfo" {
			v = strings.ToLower(v)
		}
		k := [2]string{m, v}
		if j, ok := at[k]; ok {
			if t := ts.Value(i); t.After(f.Mail[j].Time) {
				f.Mail[j].Time = t
			}
			continue
		}
		at[k] = len(f.Mail)
		mf := MailFact{NetworkMessageID: m, Time: ts.Value(i)}
		if table == "EmailUrlInfo" {
			mf.URL = v
		} else {
			mf.Recipient = v
		}
		f.Mail = append(f.Mail, mf)
	}
}
