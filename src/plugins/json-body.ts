import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'

/**
 * A JSON number token written with a fraction or an exponent (`1.0`, `1e2`, `0.99999999999999999`), found in the raw
 * text: JSON.parse rounds such a number to the nearest double before any schema sees it, so `0.99999999999999999`
 * would arrive as the integer 1. Every number this API takes is an integer, so a fraction or an exponent is refused.
 */
export class InvalidNumberError extends Error {
  readonly statusCode = 400
  // The code of every other "wrong type" refusal, so that clients branching on it need nothing new.
  readonly code = 'FST_ERR_VALIDATION'
  constructor (readonly path: string, readonly written: string) {
    super(`${path} must be an integer written without a fraction or an exponent (got ${written})`)
  }
}

const QUOTE = 0x22
const BACKSLASH = 0x5c
const COLON = 0x3a
const MINUS = 0x2d
const DOT = 0x2e
const ZERO = 0x30
const NINE = 0x39

function isNumberStart (code: number): boolean {
  return code === MINUS || (code >= ZERO && code <= NINE)
}

/** Characters that may continue a JSON number token after its first one. */
function isNumberPart (code: number): boolean {
  return (code >= ZERO && code <= NINE) || code === DOT || code === 0x65 || code === 0x45 || code === 0x2b || code === MINUS
}

/**
 * The first number token outside strings that is not written as a plain integer, or undefined. One pass over the
 * text (O(n), no allocation but the result): strings are skipped with their escapes; the key before a number is
 * remembered only to name the field in the message. Run on text JSON.parse accepted, so tokens are well formed.
 */
export function findNonIntegerNumber (text: string): { path: string, written: string } | undefined {
  let lastString = ''
  let key = ''
  let index = 0
  while (index < text.length) {
    const code = text.charCodeAt(index)
    if (code === QUOTE) {
      const start = index + 1
      index = start
      while (index < text.length && text.charCodeAt(index) !== QUOTE) index += text.charCodeAt(index) === BACKSLASH ? 2 : 1
      lastString = text.slice(start, index)
      index += 1
    } else if (code === COLON) {
      key = lastString
      index += 1
    } else if (isNumberStart(code)) {
      const start = index
      let integer = true
      while (index < text.length && isNumberPart(text.charCodeAt(index))) {
        const part = text.charCodeAt(index)
        if (part === DOT || part === 0x65 || part === 0x45) integer = false
        index += 1
      }
      if (!integer) return { path: key === '' ? 'body' : `body/${key}`, written: text.slice(start, index) }
    } else {
      index += 1
    }
  }
  return undefined
}

/**
 * Replaces Fastify's application/json parser with one that judges integers as written: Fastify's own parser first
 * (the same errors for an empty or malformed body, the same refusal of `__proto__` and `constructor` keys), then
 * the raw text is scanned for a number with a fraction or an exponent (400 FST_ERR_VALIDATION, the message naming
 * the field and the number as written).
 */
export default fp(async function jsonBody (fastify) {
  const parseJson = fastify.getDefaultJsonParser('error', 'error')
  fastify.removeContentTypeParser('application/json')
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request: FastifyRequest, body: string, done) => {
    parseJson(request, body, (error: Error | null, value?: unknown) => {
      if (error !== null) {
        done(error, undefined)
        return
      }
      const found = findNonIntegerNumber(body)
      if (found === undefined) done(null, value)
      else done(new InvalidNumberError(found.path, found.written), undefined)
    })
  })
}, { name: 'json-body' })
