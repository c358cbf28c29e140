// Toasts: short messages in the corner that go away by themselves (errors stay longer).
import { h } from './dom.js'

const MAX_VISIBLE = 4

/**
 * Show a toast. kind: 'info' | 'error' | 'notification'.
 * Returns the element (tests and callers may remove it early).
 */
export function toast (message, { kind = 'info', title = null, timeout = null } = {}) {
  const box = document.getElementById('toasts')
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status', 'data-kind': kind },
    title ? h('strong', {}, title) : null,
    h('span', {}, message),
    h('button', { class: 'toast-close', title: 'Dismiss', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×'))
  box.append(el)
  while (box.children.length > MAX_VISIBLE) box.firstElementChild.remove()
  const ms = timeout ?? (kind === 'error' ? 10000 : 6000)
  setTimeout(() => el.remove(), ms)
  return el
}
