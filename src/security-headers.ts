import type { FastifyHelmetOptions } from '@fastify/helmet'

/**
 * @fastify/helmet's headers with a Content-Security-Policy that keeps Swagger UI (/docs) working: its scripts and
 * styles are files served from this origin, it draws icons from data: URLs and sets inline styles, and "Try it out"
 * calls this origin. `upgrade-insecure-requests` is off: the service speaks plain HTTP behind a proxy or on loopback,
 * and the directive would send the UI's own requests to https.
 */
export const securityHeaders: FastifyHelmetOptions = {
  contentSecurityPolicy: {
    useDefaults: false,
    directives: {
      defaultSrc: ["'self'"],
      baseUri: ["'self'"],
      connectSrc: ["'self'"],
      fontSrc: ["'self'", 'data:'],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
      imgSrc: ["'self'", 'data:'],
      objectSrc: ["'none'"],
      scriptSrc: ["'self'"],
      scriptSrcAttr: ["'none'"],
      styleSrc: ["'self'", "'unsafe-inline'"],
    },
  },
}
