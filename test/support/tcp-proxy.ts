import net from 'node:net'

/**
 * A loopback TCP proxy in front of PostgreSQL (or the HTTP service), so a test can make the target unreachable
 * (cut) and reachable again (restore) without touching the shared server, or lose replies on their way back.
 */
export interface TcpProxy {
  port: number
  /** Refuse new connections and drop every open one, as a crashed or unreachable server would. */
  cut: () => Promise<void>
  restore: () => Promise<void>
  close: () => Promise<void>
  /**
   * While on, the next bytes PostgreSQL sends on a connection are thrown away and that connection is dropped: the
   * server did the work (a statement in autocommit has committed), the client never hears of it. The ambiguous case.
   */
  swallowReplies: (on: boolean) => void
  /**
   * Like swallowReplies(true) for the next `count` replies only (then replies flow again): in front of the HTTP
   * service, each of them is an answer sent after its change committed, lost with its connection.
   */
  swallowNext: (count: number) => void
  /** Connections dropped by swallowReplies. */
  swallowed: () => number
}

export async function startTcpProxy (targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>()
  let server: net.Server | undefined
  let port = 0
  let swallowing = false
  /** Replies still to swallow after swallowNext; counted down per dropped connection. */
  let swallowBudget = 0
  let swallowedCount = 0

  const track = (socket: net.Socket): void => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }

  const listen = async (): Promise<void> => {
    server = net.createServer((client) => {
      const upstream = net.connect(targetPort, targetHost)
      track(client)
      track(upstream)
      client.pipe(upstream)
      upstream.on('data', (chunk: Buffer) => {
        if (!swallowing && swallowBudget <= 0) {
          client.write(chunk)
          return
        }
        if (!swallowing) swallowBudget -= 1
        swallowedCount += 1
        client.destroy()
        upstream.destroy()
      })
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject)
      server!.listen(port, '127.0.0.1', () => { resolve() })
    })
    const address = server.address()
    port = typeof address === 'object' && address !== null ? address.port : port
  }

  const stop = async (): Promise<void> => {
    for (const socket of sockets) socket.destroy()
    if (server === undefined) return
    const closing = server
    server = undefined
    await new Promise<void>((resolve) => closing.close(() => { resolve() }))
  }

  await listen()
  return {
    port,
    cut: stop,
    restore: listen,
    close: stop,
    swallowReplies: (on) => { swallowing = on },
    swallowNext: (count) => { swallowBudget = count },
    swallowed: () => swallowedCount,
  }
}
