// Reading the others' presence out of awareness.
//
// Local state shape: {user: {id, name, color}, pointer: {x, y} | null (canvas coords),
// selected: [nodeId], dragging: nodeId | null, viewport?: {x, y, zoom}}.
// `user.id` and `user.name` are stamped by the server from the token.
import { colorFor } from '../lib/dom.js'

/** Other clients' states with a user, as [{clientId, user, pointer, selected, dragging}]. */
export function peers (awareness) {
  const out = []
  for (const [clientId, state] of awareness.getStates()) {
    if (clientId === awareness.clientID || !state || !state.user) continue
    const user = state.user
    out.push({
      clientId,
      user: {
        id: String(user.id ?? clientId),
        name: String(user.name ?? user.id ?? 'someone'),
        color: typeof user.color === 'string' ? user.color : colorFor(user.id ?? clientId),
      },
      pointer: validPoint(state.pointer),
      selected: Array.isArray(state.selected) ? state.selected.map(String) : [],
      dragging: typeof state.dragging === 'string' ? state.dragging : null,
    })
  }
  return out
}

/** One entry per user (several tabs of one user show as one avatar). */
export function peerUsers (awareness) {
  const byId = new Map()
  for (const p of peers(awareness)) if (!byId.has(p.user.id)) byId.set(p.user.id, p.user)
  return [...byId.values()].sort((a, b) => a.name.localeCompare(b.name))
}

function validPoint (p) {
  return p && Number.isFinite(p.x) && Number.isFinite(p.y) ? { x: p.x, y: p.y } : null
}
