export { kafkaSourceSchema, kafkaTopicSchema, unknownKafkaTables, type KafkaSourceConfig, type KafkaSourceConfigInput, type KafkaTopicConfig } from './config.js';
export { createKafkaSource, clientConfig, KafkaAuthError, type KafkaSource, type KafkaSourceDeps } from './source.js';
export { decodeRecord, decimalText, positionOf, streamOf, DEBEZIUM_UNAVAILABLE, type Decoded, type KafkaRecord } from './decode.js';
