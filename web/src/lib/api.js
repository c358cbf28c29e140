// The REST client (/api/v1) and the stored token.
//
// Every error the server returns is {"error": {code, message, details}}; it is raised
// here as an ApiError carrying the HTTP status and that code.

const TOKEN_KEY = 'collab.token'

export const tokenStore = {
  get () { return localStorage.getItem(TOKEN_KEY) },
  set (token) { localStorage.setItem(TOKEN_KEY, token) },
  clear () { localStorage.removeItem(TOKEN_KEY) },
}

export class ApiError extends Error {
  constructor (status, code, message, details) {
    super(message)
    this.status = status
    this.code = code
    this.details = details || {}
  }
}

/**
 * One REST call. `token` defaults to the stored one; pass `token: null` to send none.
 * Returns the parsed JSON body (null for 204).
 */
export async function api (method, path, body, { token = tokenStore.get() } = {}) {
  const headers = {}
  if (token) headers.Authorization = `Bearer ${token}`
  if (body !== undefined) headers['Content-Type'] = 'application/json'
  let response
  try {
    response = await fetch('/api/v1' + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    throw new ApiError(0, 'NETWORK', 'the server cannot be reached', { reason: String(err) })
  }
  if (response.status === 204) return null
  const text = await response.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = null
  }
  if (!response.ok) {
    const e = (data && data.error) || {}
    throw new ApiError(response.status, e.code || `HTTP_${response.status}`,
      e.message || response.statusText || 'request failed', e.details)
  }
  return data
}

export const get = (path, opts) => api('GET', path, undefined, opts)
export const post = (path, body, opts) => api('POST', path, body === undefined ? {} : body, opts)
export const put = (path, body, opts) => api('PUT', path, body, opts)
export const del = (path, opts) => api('DELETE', path, undefined, opts)

/** A readable one-liner for an error from api() or a socket error payload. */
export function describeError (err) {
  if (!err) return 'unknown error'
  if (err.error) return describeError(err.error) // socket payload {error: {...}}
  const code = err.code ? `${err.code}: ` : ''
  return code + (err.message || String(err))
}
