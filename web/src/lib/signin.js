// Sign-in, shared by the editor and the admin page.
//
// A token is pasted (or obtained from the development sign-in, which the server offers
// only in development mode: POST /api/v1/dev/sign-in answers 404 otherwise) and kept in
// localStorage. GET /api/v1/me tells who it belongs to.
import { ApiError, describeError, get, post, tokenStore } from './api.js'
import { h, mount } from './dom.js'

/** The signed-in user (GET /me), or null when there is no valid stored token. */
export async function currentUser () {
  if (!tokenStore.get()) return null
  try {
    return await get('/me')
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      tokenStore.clear()
      return null
    }
    throw err
  }
}

/** Is the development sign-in offered? GET /api/v1/info says (no token needed). */
async function devSignInAvailable () {
  try {
    const info = await get('/info', { token: null })
    return Boolean(info.development)
  } catch (err) {
    return false
  }
}

/**
 * Resolve with the signed-in user, showing the sign-in form in `root` until a valid
 * token (an admin one when `admin`) is stored.
 */
export async function requireUser (root, { admin = false } = {}) {
  let notice = null
  for (;;) {
    let me = null
    try {
      me = await currentUser()
    } catch (err) {
      notice = `Cannot check the token: ${describeError(err)}`
    }
    if (me && (!admin || me.admin)) return me
    if (me && admin) {
      notice = `This token belongs to ${me.name} (${me.user_id}), who is not an admin. ` +
        'The dashboard needs a token with the admin role.'
    }
    await showForm(root, { admin, notice })
    notice = null
  }
}

export function signOut () {
  tokenStore.clear()
  location.reload()
}

/** Render the form; resolve once a token has been stored. */
function showForm (root, { admin, notice }) {
  return new Promise(resolve => {
    const error = h('p', { class: 'form-error', role: 'alert', hidden: true })
    const fail = msg => { error.textContent = msg; error.hidden = false }

    const tokenInput = h('textarea', {
      id: 'token-input', rows: 4, placeholder: 'eyJhbGciOiJIUzI1NiIs…', spellcheck: 'false',
      'aria-label': 'Token',
    })
    const tokenForm = h('form', {
      class: 'stack',
      'data-testid': 'token-form',
      onsubmit: async ev => {
        ev.preventDefault()
        const token = tokenInput.value.trim()
        if (!token) return fail('Paste a token first.')
        try {
          await get('/me', { token })
        } catch (err) {
          return fail(`This token was refused: ${describeError(err)}`)
        }
        tokenStore.set(token)
        resolve()
      },
    },
    h('label', { for: 'token-input' }, 'Paste a token (JWT)'),
    tokenInput,
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    h('p', { class: 'hint' }, 'On the server machine, ',
      h('code', {}, `collab token --sub alice${admin ? ' --admin' : ''}`),
      ' prints a development token.'))

    const devSection = h('section', { class: 'dev-signin', hidden: true, 'data-testid': 'dev-signin' })
    const userId = h('input', { id: 'dev-user', required: true, pattern: '[A-Za-z0-9_.@\\-]+', value: admin ? 'admin' : '', placeholder: 'alice' })
    const name = h('input', { id: 'dev-name', placeholder: 'Alice (optional)' })
    const isAdmin = h('input', { id: 'dev-admin', type: 'checkbox', checked: admin })
    mount(devSection,
      h('h2', {}, 'Development sign-in'),
      h('p', { class: 'hint' }, 'This server runs in development mode: sign in as anyone, no token needed.'),
      h('form', {
        class: 'stack',
        onsubmit: async ev => {
          ev.preventDefault()
          try {
            const out = await post('/dev/sign-in', {
              user_id: userId.value.trim(),
              name: name.value.trim() || null,
              admin: isAdmin.checked,
            }, { token: null })
            tokenStore.set(out.token)
            resolve()
          } catch (err) {
            fail(describeError(err))
          }
        },
      },
      h('label', { for: 'dev-user' }, 'User id'), userId,
      h('label', { for: 'dev-name' }, 'Display name'), name,
      h('label', { class: 'check' }, isAdmin, ' Admin'),
      h('button', { class: 'primary', type: 'submit' }, 'Development sign-in')))

    mount(root, h('main', { class: 'signin' },
      h('div', { class: 'card' },
        h('h1', {}, admin ? 'collab admin' : 'collab'),
        h('p', { class: 'lead' }, admin
          ? 'Live rooms across the cluster. Sign in with an admin token.'
          : 'Co-edit node graphs in real time. Sign in to see your projects.'),
        notice ? h('p', { class: 'notice', 'data-testid': 'signin-notice' }, notice) : null,
        error,
        devSection,
        tokenForm)))

    devSignInAvailable().then(on => { devSection.hidden = !on })
  })
}
