package pipeline

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stitch-xdr/stitch/state"
)

// Metrics are the pipeline's Prometheus series. Names follow the Prometheus
// conventions (stitch_ prefix, base units, _total counters); a promlint test
// keeps them that way. Counters move only when a transaction commits, so
// they count what downstream consumers can see, never work that was aborted
// and redone.
type Metrics struct {
	Registry *prometheus.Registry

	RecordsIn          *prometheus.CounterVec   // topic
	RecordsOut         *prometheus.CounterVec   // topic
	Normalized         *prometheus.CounterVec   // table
	DeadLetters        *prometheus.CounterVec   // reason
	BatchRows          prometheus.Histogram     //
	BatchBytes         prometheus.Histogram     //
	Latency            *prometheus.HistogramVec // stage: poll to commit
	Transactions       *prometheus.CounterVec   // stage, outcome
	ConsumerLag        *prometheus.GaugeVec     // group
	ArrowBytes         prometheus.GaugeFunc
	IncidentVersions   prometheus.Counter
	HuntingRows        *prometheus.CounterVec // table
	HuntingSegments    prometheus.Counter
	HuntingRemoved     prometheus.Counter
	HuntingQuarantined prometheus.Counter
	StageErrors        *prometheus.CounterVec // stage
	InputRecordBytes   prometheus.Histogram
	RestoreRecords     prometheus.Counter     // changelog records applied to restore state
	Restoring          prometheus.Gauge       // facts partitions being restored now
	StageCounts        *prometheus.CounterVec // stage, counter, label: counters without a series of their own
	// StateBytes is the size of each state store (watchStore).
	StateBytes *prometheus.GaugeVec
}

// count feeds a committed stage counter (Txn.Count) to its series.
func (m *Metrics) count(stage, counter, label string, n int64) {
	v := float64(n)
	switch counter {
	case CountNormalizedRows:
		m.Normalized.WithLabelValues(label).Add(v)
	case CountDeadLetters:
		m.DeadLetters.WithLabelValues(label).Add(v)
	case CountIncidentVersions:
		m.IncidentVersions.Add(v)
	case CountParquetRows:
		m.HuntingRows.WithLabelValues(label).Add(v)
	case CountRecordsRead:
		// stitch_records_in_total has it by topic.
	default:
		m.StageCounts.WithLabelValues(stage, counter, label).Add(v)
	}
}

func newMetrics(arrowBytes func() float64) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		RecordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_records_in_total", Help: "Kafka records consumed and committed, by topic.",
		}, []string{"topic"}),
		RecordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_records_out_total", Help: "Kafka records produced and committed, by topic.",
		}, []string{"topic"}),
		Normalized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_rows_normalized_total", Help: "Signal records normalized into Arrow rows, by advanced-hunting table.",
		}, []string{"table"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		BatchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stitch_batch_rows", Help: "Rows per Arrow batch emitted by the normalizer.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		BatchBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stitch_batch_input_bytes", Help: "Input bytes behind each Arrow batch.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 10),
		}),
		InputRecordBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "stitch_input_record_bytes", Help: "Size of consumed input records.",
			Buckets: prometheus.ExponentialBuckets(64, 4, 10),
		}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stitch_transaction_duration_seconds", Help: "Time from the start of a stage transaction to its commit.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}, []string{"stage"}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_transactions_total", Help: "Stage transactions ended, by outcome (committed, aborted).",
		}, []string{"stage", "outcome"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stitch_consumer_lag_records", Help: "Records not yet committed by a stage's consumer group.",
		}, []string{"group"}),
		IncidentVersions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stitch_incident_updates_total", Help: "Incident versions published to the incidents topic.",
		}),
		HuntingRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_hunting_rows_written_total", Help: "Rows committed to Parquet hunting partitions, by table.",
		}, []string{"table"}),
		HuntingSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stitch_hunting_segments_committed_total", Help: "Parquet segments (files plus their offsets) committed.",
		}),
		HuntingRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stitch_hunting_partitions_removed_total", Help: "Hunting date partitions removed by retention.",
		}),
		HuntingQuarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stitch_hunting_files_quarantined_total", Help: "Parquet files of committed segments that could not be published and were moved to <hunting.dir>/_quarantine (with their reason).",
		}),
		RestoreRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stitch_state_restore_records_total", Help: "Changelog records applied to bring a state store up to its committed changelogs.",
		}),
		Restoring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stitch_state_restoring_partitions", Help: "Input partitions of stateful stages whose state is being restored from the changelogs now.",
		}),
		StageCounts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_stage_count_total", Help: "Committed counts of a stage that have no series of their own, by stage, counter and label.",
		}, []string{"stage", "counter", "label"}),
		StageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stitch_stage_errors_total", Help: "Errors a stage recovered from by aborting and retrying, by stage.",
		}, []string{"stage"}),
		StateBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stitch_state_bytes", Help: "Size of each state store (kind disk: every file of the Pebble store; live: the data still referenced), sampled every few seconds.",
		}, []string{"store", "kind"}),
	}
	m.ArrowBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stitch_arrow_allocated_bytes", Help: "Bytes currently allocated for Arrow buffers.",
	}, arrowBytes)
	reg.MustRegister(m.RecordsIn, m.RecordsOut, m.Normalized, m.DeadLetters, m.BatchRows, m.BatchBytes,
		m.InputRecordBytes, m.Latency, m.Transactions, m.ConsumerLag, m.ArrowBytes, m.IncidentVersions,
		m.HuntingRows, m.HuntingSegments, m.HuntingRemoved, m.HuntingQuarantined, m.StageErrors, m.RestoreRecords, m.Restoring, m.StageCounts, m.StateBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watchStore samples the size of a state store into StateBytes every few
// seconds until the returned stop is called (before the store closes), which
// also removes its series.
func (m *Metrics) watchStore(name string, st *state.Store) (stop func()) {
	sample := func() {
		sm := st.Metrics()
		m.StateBytes.WithLabelValues(name, "disk").Set(float64(sm.DiskBytes))
		m.StateBytes.WithLabelValues(name, "live").Set(float64(sm.LiveBytes))
	}
	sample()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		m.StateBytes.DeleteLabelValues(name, "disk")
		m.StateBytes.DeleteLabelValues(name, "live")
	}
}
