export { kafkaSourceSchema, kafkaTopicSchema, unknownKafkaTables, type KafkaSourceConfig, type KafkaSourceConfigInput, type KafkaTopicConfig } from './config.js';
export { clientConfig, KafkaAuthError, type KafkaSource, type KafkaSourceDeps } from './source.js';
// The consumer (source.ts) with its lag monitor, which /metrics reads.
export { createKafkaSource, createLagMonitor, partitionLag, type KafkaLag, type KafkaPartitionLag, type LaggingKafkaSource } from './lag.js';
export { decodeRecord, decimalText, positionOf, streamOf, DEBEZIUM_UNAVAILABLE, type Decoded, type KafkaRecord } from './decode.js';
