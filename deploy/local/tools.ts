import path from 'node:path'

/** Where the Debian packages put what the HA topology runs. */
export const PATRONI = '/usr/bin/patroni'
export const ETCD = '/usr/bin/etcd'
export const HAPROXY = '/usr/sbin/haproxy'
export const PGBOUNCER = '/usr/sbin/pgbouncer'
export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin'

/** The Debian packages the topology needs (test/support/system-tool.ts checks them; .ci/run installs them). */
export const HA_TOOLS = [
  { path: PATRONI, aptPackage: 'patroni' },
  { path: ETCD, aptPackage: 'etcd-server' },
  { path: HAPROXY, aptPackage: 'haproxy' },
  { path: PGBOUNCER, aptPackage: 'pgbouncer' },
  { path: path.join(PG_BIN_DIR, 'postgres'), aptPackage: 'postgresql-15' },
]
