/**
 * The seed burst as tests use it: the bench's burst runner (burst-client.mjs in its own process, one fresh socket
 * per request), so the test and the bench measure the same thing with the same code.
 */
export { burst, burstRequests, type BurstOutcome as BurstResult, type BurstRequest } from '../../bench/load.js'
