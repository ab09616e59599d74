package pipeline

import "github.com/twmb/franz-go/pkg/kgo"

// The producer's limits. A record larger than the producer's buffer
// (kafka.max_buffered_bytes) or than a batch the cluster accepts
// (message.max.bytes, 1 MiB by default on Kafka) fails its transaction on
// every retry, and the stage stops for good. So the stages that write
// records whose size follows their input (normalize's hunting.<Table>
// Arrow batches and its facts) keep each under recordLimit, splitting what
// would be larger.

// embeddedBatchBytes is the producer's batch limit on the embedded broker,
// whose message.max.bytes is far larger (connectors/kafka).
const embeddedBatchBytes = 8 << 20

// kafkaDefaultBatchBytes is what a Kafka cluster accepts by default
// (message.max.bytes 1048588) and franz-go's default batch limit.
const kafkaDefaultBatchBytes = 1000012

// batchBytes is the producer's batch limit: kafka.max_message_bytes when
// set, 8 MiB on the embedded broker, else the Kafka default.
func batchBytes(c Config) int {
	switch {
	case c.Kafka.MaxMessageBytes > 0:
		return int(c.Kafka.MaxMessageBytes)
	case c.Embedded():
		return embeddedBatchBytes
	}
	return kafkaDefaultBatchBytes
}

// batchOpts are the producer options batchBytes implies.
func batchOpts(c Config) []kgo.Opt {
	return []kgo.Opt{kgo.ProducerBatchMaxBytes(int32(batchBytes(c)))}
}

// recordLimit is the largest value a stage writes when it can choose: the
// batch limit less room for the batch's and record's framing and headers,
// and at most half the producer's buffer, which must hold more than one.
func recordLimit(c Config) int {
	n := batchBytes(c) - 16<<10
	if b := int(c.Kafka.MaxBufferedBytes / 2); b > 0 && b < n {
		n = b
	}
	return max(n, 4<<10)
}
