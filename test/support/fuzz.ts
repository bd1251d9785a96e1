import fc from 'fast-check'
import type { RawRequest } from './raw-http.js'

/**
 * Arbitraries for fuzzing the service's routes: valid, near-valid and hostile requests, as raw HTTP.
 * A body is JSON *text* built here (not JSON.stringify) so it can hold what JSON.stringify never writes:
 * duplicate keys, number tokens beyond 2^53 or beyond a double, `-0`, exponents, truncation.
 */

/** How many runs each property gets: a few hundred in CI, FUZZ_RUNS=10000 in the long run. */
export function fuzzRuns (fallback = 300): number {
  const text = process.env.FUZZ_RUNS
  const runs = text === undefined || text === '' ? fallback : Number(text)
  if (!Number.isSafeInteger(runs) || runs < 1 || runs > 1_000_000) throw new Error(`FUZZ_RUNS must be 1..1000000, got ${text}`)
  return runs
}

/** A reproducible seed when FUZZ_SEED is set; fast-check prints the seed of any failure. */
export function fuzzSeed (): number | undefined {
  const text = process.env.FUZZ_SEED
  return text === undefined || text === '' ? undefined : Number(text)
}

const MAX = Number.MAX_SAFE_INTEGER

/** Number tokens as they appear in JSON text, including ones that do not survive JSON.parse exactly. */
const numberToken: fc.Arbitrary<string> = fc.oneof(
  fc.integer({ min: -20_000, max: 20_000 }).map(String),
  fc.constantFrom('0', '-0', '1', '-1', '0.0', '1.0', '-2.0', '1e0', '1E2', '-1e3', '1.5', '-0.5', '1e-7', '2.5e2',
    String(MAX), String(-MAX), String(MAX + 1), '9007199254740993', '-9007199254740993', '1e16', '1e308', '1e400', '-1e400',
    '123456789012345678901234567890', '0.1e1', '4294967296', '2147483648', '-2147483648'),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
)

/** Invalid JSON tokens: JSON.parse refuses each one. */
const brokenToken: fc.Arbitrary<string> = fc.constantFrom('NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '01', '+1', '.5', '1.', "'1'", '1_000', 'tru', '"\\x41"', '"\\u12"', '\u00a01')

const stringToken: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('', '1', '-5', '1e3', ' 1', '1 ', 'null', 'true', '__proto__', '\u0000', '\u202e1', '١٢٣', '𝟏', 'NaN'),
).map((value) => JSON.stringify(value))

/** Keys a hostile client might send: typos, case changes, prototype-pollution keys, unicode. */
const hostileKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', 'userid', 'UserId',
    'user_id', 'ammount', 'amount ', 'Amount', 'id', 'balance', 'fromUserId', 'toUserId', 'from', 'to', '$where', 'a.b', '\u0000'),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
)
const keyToken: fc.Arbitrary<string> = hostileKey.map((key) => JSON.stringify(key))

/** Any JSON value as text, nested a few levels. */
const { valueToken } = fc.letrec<{ valueToken: string }>((tie) => ({
  valueToken: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    numberToken,
    stringToken,
    fc.constantFrom('null', 'true', 'false', '[]', '{}'),
    fc.array(tie('valueToken'), { maxLength: 3 }).map((items) => `[${items.join(',')}]`),
    fc.array(fc.tuple(keyToken, tie('valueToken')), { maxLength: 3 }).map((pairs) => `{${pairs.map(([k, v]) => `${k}:${v}`).join(',')}}`),
  ),
}))

/** A value that may be valid for an integer field, or anything else. */
export function fieldValue (valid: fc.Arbitrary<number>): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: valid.map(String) },
    { weight: 3, arbitrary: numberToken },
    { weight: 2, arbitrary: valueToken },
    { weight: 1, arbitrary: brokenToken },
  )
}

/** Nesting deeper than a parser should try, under or over the 4 KiB body limit. */
const deepNesting: fc.Arbitrary<string> = fc.tuple(fc.integer({ min: 10, max: 5000 }), fc.constantFrom('[', '{"a":'), fc.boolean()).map(([depth, open, closed]) => {
  const close = open === '[' ? ']' : '}'
  return `{"userId":${open.repeat(depth)}1${closed ? close.repeat(depth) : ''},"amount":1}`
})

export interface BodyField { name: string, valid: fc.Arbitrary<number> }

/**
 * A body for a route with the given integer fields: valid, near-valid (a field changed, dropped, duplicated or
 * joined by an unknown one) or hostile (any JSON, broken JSON, deep nesting, huge).
 */
export function bodyText (fields: BodyField[]): fc.Arbitrary<string> {
  const validObject = fc.tuple(...fields.map((field) => field.valid)).map((values) =>
    JSON.stringify(Object.fromEntries(fields.map((field, index) => [field.name, values[index]]))))
  const nearValid = fc.record({
    values: fc.tuple(...fields.map((field) => fieldValue(field.valid))),
    keep: fc.array(fc.boolean(), { minLength: fields.length, maxLength: fields.length }),
    extra: fc.array(fc.tuple(keyToken, valueToken), { maxLength: 2 }),
    duplicate: fc.option(fc.tuple(fc.nat({ max: Math.max(0, fields.length - 1) }), fieldValue(fields[0]?.valid ?? fc.constant(1)))),
    shuffle: fc.boolean(),
  }).map(({ values, keep, extra, duplicate, shuffle }) => {
    const pairs: Array<[string, string]> = []
    fields.forEach((field, index) => { if (keep[index] !== false) pairs.push([JSON.stringify(field.name), values[index] ?? '1']) })
    if (duplicate !== null) {
      const field = fields[duplicate[0]]
      if (field !== undefined) pairs.push([JSON.stringify(field.name), duplicate[1]])
    }
    pairs.push(...extra)
    if (shuffle) pairs.reverse()
    return `{${pairs.map(([key, value]) => `${key}:${value}`).join(',')}}`
  })
  return fc.oneof(
    { weight: 7, arbitrary: validObject },
    { weight: 6, arbitrary: nearValid },
    { weight: 1, arbitrary: valueToken },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)) },
    { weight: 1, arbitrary: fc.tuple(validObject, fc.nat()).map(([text, cut]) => text.slice(0, cut % Math.max(1, text.length))) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 64 }) },
    { weight: 1, arbitrary: deepNesting },
    { weight: 1, arbitrary: fc.integer({ min: 4000, max: 9000 }).map((size) => `{"userId":1,"amount":1,"pad":"${'x'.repeat(size)}"}`) },
    { weight: 1, arbitrary: fc.constantFrom('', ' ', 'null', '[]', '{}', '{"userId":1,"amount":5,"__proto__":{"admin":true}}',
      '{"constructor":{"prototype":{"polluted":1}},"userId":1,"amount":1}', '{"userId":1,"amount":1}garbage', '\ufeff{"userId":1,"amount":1}') },
  )
}

/** Content types: JSON most of the time, and every near miss. */
export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 12, arbitrary: fc.constant('application/json') },
  { weight: 3, arbitrary: fc.constantFrom(undefined, 'application/json; charset=utf-8', 'application/json; charset=utf-16', 'application/json;charset=latin1',
    'APPLICATION/JSON', 'application/jsonx', 'application/merge-patch+json', 'application/problem+json', 'text/plain', 'text/json',
    'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream', '*/*', '', ';', 'application/json, text/plain',
    'application/json; boundary="', 'application/\u00e9json') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
)

/** Header names this harness owns (framing) or that change the protocol: never generated. */
const RESERVED = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'content-type', 'expect', 'upgrade', 'te', 'trailer', 'keep-alive', 'http2-settings'])

const headerName: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('X-Request-Id', 'Accept', 'Accept-Encoding', 'Authorization', 'Cookie', 'User-Agent', 'X-Forwarded-For', 'Idempotency-Key', 'Content-Encoding', 'Accept-Charset', 'Range', 'If-Match', 'Origin'),
  fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}$/),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 12 }),
).filter((name) => !RESERVED.has(name.toLowerCase()) && !/[\r\n]/.test(name))

/** Header values: printable, latin-1 and UTF-8 bytes, control bytes, and long enough to pass the 16 KiB header limit. */
export const headerValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 24_000 }).map((size) => 'v'.repeat(size)) },
  { weight: 1, arbitrary: fc.constantFrom('gzip', 'br', 'deflate', 'identity', 'x-unknown', 'Bearer ' + 'a'.repeat(300), '\t', '\u0000', '\u007f') },
// CR and LF would end the header line and start another (a second request on the socket): not what we fuzz here.
).map((value) => value.replace(/[\r\n]/g, ' '))

export const extraHeaders: fc.Arbitrary<Array<[string, string]>> = fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 })

/** Idempotency-Key values: valid, at and past the 1..255 printable-ASCII bounds, unicode, control bytes. */
export const idempotencyKey: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 5, arbitrary: fc.constant(undefined) },
  { weight: 3, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,64}$/) },
  { weight: 2, arbitrary: fc.constantFrom('', ' ', '  x  ', 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(4000), 'ключ', 'key\u0000', 'key\u007f', 'ké', '\t',
    '"quoted"', 'a, b', '../../etc/passwd', "'; DROP TABLE users; --", '%00', 'null', '0') },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 30 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 30 }) },
).map((value) => value?.replace(/[\r\n]/g, ' '))

/** Method: the route's own most of the time. */
export function methodFor (own: string): fc.Arbitrary<string> {
  return fc.oneof({ weight: 9, arbitrary: fc.constant(own) },
    { weight: 1, arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'patch', 'FOO', 'CONNECT') })
}

/** Path: the route's own most of the time, else near misses (trailing slash, case, query junk, encoding). */
export function pathFor (own: string): fc.Arbitrary<string> {
  return fc.oneof({ weight: 12, arbitrary: fc.constant(own) },
    { weight: 1, arbitrary: fc.constantFrom(`${own}/`, own.toUpperCase(), `/${own}`, `${own}?x=1`, `${own}?userId=2&amount=9`, `${own}%00`, `${own}/..`,
      `${own}?${'q'.repeat(5000)}`, own.replace('/api', '/api/'), `${own}#frag`, `${own};x`, '*', own.replace(/\/[^/]*$/, '/%zz')) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 20 }).map((suffix) => own + encodeURIComponent(suffix)) })
}

/** The id segment of /api/users/:id: valid, out of range, not a number, too long, percent-encoded unicode. */
export const idSegment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 1, max: 5 }).map(String) },
  { weight: 2, arbitrary: fc.constantFrom('0', '-1', '1.0', '1.5', '1e3', '1e400', '0x10', '+1', ' 1', '%201', '01', '9007199254740991', '9007199254740992',
    '99999999999999999999999', 'NaN', 'Infinity', 'null', 'true', '%00', '..', '%2e%2e', '%2F', '1%2F2', 'x'.repeat(101), '1'.repeat(101), '%E2%82%AC', '%', '%zz') },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }).map(String) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 20 }).map((text) => encodeURIComponent(text)) },
)

export interface FuzzRequest extends RawRequest { label: string }

/** Puts a generated request together: content type and Idempotency-Key go in only when generated. */
export function assemble (label: string, method: string, path: string, body: string | undefined, type: string | undefined,
  headers: Array<[string, string]>, key?: string): FuzzRequest {
  const all: Array<[string, string]> = []
  if (type !== undefined) all.push(['Content-Type', type])
  if (key !== undefined) all.push(['Idempotency-Key', key])
  all.push(...headers)
  return { label, method, path, headers: all, ...(body === undefined ? {} : { body }) }
}
