export {
  HostKvStore,
  type HostKvStoreOptions,
  type KvArray,
  type KvStore,
  type KvStoreStats,
  kvBytesPerToken,
  kvCapacityTokens,
} from './store.js';
