import fp from 'fastify-plugin'
import { Ajv, type Options } from 'ajv'
import addFormatsModule from 'ajv-formats'

// ajv-formats is CommonJS: its callable export sits on `.default` under NodeNext.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

/**
 * Two validators instead of Fastify's one lenient default:
 * - bodies: no type coercion ("5" is not 5, money is a JSON integer) and unknown properties refused, not removed;
 * - params, querystring, headers: strings coerced to the declared types (a path segment is always text).
 */
const shared: Options = { useDefaults: true, removeAdditional: false, allErrors: false, strict: false }

function createAjv (coerceTypes: boolean): Ajv {
  const ajv = new Ajv({ ...shared, coerceTypes })
  addFormats(ajv)
  return ajv
}

export default fp(async function validation (fastify) {
  const bodyAjv = createAjv(false)
  const textAjv = createAjv(true)
  fastify.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema))
}, { name: 'validation' })
