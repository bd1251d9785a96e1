import fp from 'fastify-plugin'
import { Ajv, type Options, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'

// ajv-formats is CommonJS: its callable export sits on `.default` under NodeNext.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

/**
 * Two validators instead of Fastify's one lenient default:
 * - bodies: no type coercion ("5" is not 5, money is a JSON integer) and unknown properties refused, not removed;
 * - params, querystring, headers: strings coerced to the declared types (a path segment is always text), but an
 *   integer only when written as one (see integerAsWritten).
 */
const shared: Options = { useDefaults: true, removeAdditional: false, allErrors: false, strict: false }

/** Decimal digits with an optional minus sign: what an integer looks like as text. */
const INTEGER_TEXT = /^-?[0-9]+$/

function createAjv (coerceTypes: boolean): Ajv {
  const ajv = new Ajv({ ...shared, coerceTypes })
  addFormats(ajv)
  return ajv
}

/** The properties an object schema declares as integers (ids, page sizes). */
function integerProperties (schema: unknown): string[] {
  const properties = (schema as { properties?: Record<string, { type?: unknown }> } | undefined)?.properties ?? {}
  return Object.keys(properties).filter((name) => properties[name]?.type === 'integer')
}

/**
 * Ajv's coercion turns "1.0", "1e2" and "0x10" into integers (it goes through Number()). A text integer must be
 * digits: anything else is refused before coercion, in Fastify's validation error shape (400 FST_ERR_VALIDATION).
 */
function integerAsWritten (validate: ValidateFunction, names: string[], part: string): ValidateFunction {
  if (names.length === 0) return validate
  const guarded = function (data: unknown, context?: unknown): unknown {
    const values = data as Record<string, unknown> | null
    for (const name of names) {
      const value = values?.[name]
      if (typeof value === 'string' && !INTEGER_TEXT.test(value)) {
        return { error: new Error(`${part}/${name} must be an integer written in digits, without a fraction or an exponent`) }
      }
    }
    return (validate as (data: unknown, context?: unknown) => unknown)(data, context)
  }
  // Fastify passes the parent to validators with a schemaEnv (for root coercion) and reads `.errors` after a false.
  Object.defineProperty(guarded, 'schemaEnv', { value: validate.schemaEnv })
  Object.defineProperty(guarded, 'errors', { get: () => validate.errors })
  return guarded as unknown as ValidateFunction
}

export default fp(async function validation (fastify) {
  const bodyAjv = createAjv(false)
  const textAjv = createAjv(true)
  fastify.setValidatorCompiler(({ schema, httpPart }) => {
    if (httpPart === 'body') return bodyAjv.compile(schema)
    return integerAsWritten(textAjv.compile(schema), integerProperties(schema), httpPart ?? 'input')
  })
}, { name: 'validation' })
