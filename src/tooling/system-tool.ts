/** An executable from a Debian package that a tool or test runs (pgbouncer, patroni, …): where it is, and its package. */
export interface SystemTool {
  /** Absolute path of the executable. */
  path: string
  /** The Debian package that ships it (the install hint when it is missing). */
  aptPackage: string
}
