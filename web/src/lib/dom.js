// Tiny DOM helpers: h() builds HTML elements, svg() builds SVG elements.
//
//   h('button', { class: 'primary', onclick: save, 'data-testid': 'save' }, 'Save')
//
// Attributes starting with "on" become event listeners; `class`, `style` (string) and
// everything else become attributes; false/null/undefined attributes are left out;
// children may be strings, numbers, nodes, arrays of them, or null (skipped).

const SVG_NS = 'http://www.w3.org/2000/svg'

function build (el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value)
    } else if (key === 'value' && 'value' in el) {
      el.value = value
    } else if (key === 'checked' || key === 'disabled' || key === 'selected') {
      el[key] = Boolean(value)
      if (value) el.setAttribute(key, '')
    } else {
      el.setAttribute(key, value === true ? '' : String(value))
    }
  }
  append(el, children)
  return el
}

function append (el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    if (Array.isArray(child)) append(el, child)
    else el.append(child instanceof Node ? child : String(child))
  }
}

export function h (tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children)
}

export function svg (tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children)
}

/** Replace all children of `el`. */
export function mount (el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

/**
 * Make `parent` show `children` while keeping every existing node that is equal to its
 * replacement (same markup), so that a view refreshed every second keeps its elements,
 * hover and focus where nothing changed. An element carrying `data-keep="<key>"` is
 * patched recursively (attributes synced) when the old one has the same tag and key,
 * instead of being replaced: use it only on containers without listeners of their own.
 * Listeners of replaced nodes come from the new markup, so equal markup must mean equal
 * behaviour (put what a handler depends on in an attribute).
 */
export function patch (parent, ...children) {
  const next = []
  append({ append: (...n) => next.push(...n.map(c => typeof c === 'string' ? document.createTextNode(c) : c)) }, children)
  next.forEach((node, i) => {
    const old = parent.childNodes[i]
    if (!old) {
      parent.append(node)
    } else if (old.isEqualNode(node)) {
      // keep the old one
    } else if (node.nodeType === 1 && old.nodeType === 1 && old.tagName === node.tagName &&
        node.dataset.keep !== undefined && old.dataset.keep === node.dataset.keep) {
      for (const a of [...old.attributes]) if (!node.hasAttribute(a.name)) old.removeAttribute(a.name)
      for (const a of [...node.attributes]) setAttr(old, a.name, a.value)
      patch(old, ...node.childNodes)
    } else {
      parent.replaceChild(node, old)
    }
  })
  while (parent.childNodes.length > next.length) parent.lastChild.remove()
  return parent
}

/** Set an attribute only when it changes (keeps re-renders cheap). */
export function setAttr (el, name, value) {
  const v = String(value)
  if (el.getAttribute(name) !== v) el.setAttribute(name, v)
}

export function setText (el, text) {
  const t = String(text)
  if (el.textContent !== t) el.textContent = t
}

/** Initials for an avatar: "Ada Lovelace" -> "AL", "bob" -> "BO". */
export function initials (name) {
  const words = String(name || '?').trim().split(/[\s._@-]+/).filter(Boolean)
  if (words.length >= 2) return (words[0][0] + words[1][0]).toUpperCase()
  return (words[0] || '?').slice(0, 2).toUpperCase()
}

/** A stable, readable colour for a user id (same user, same colour everywhere). */
export function colorFor (id) {
  const palette = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#16a5a5',
    '#c2188c', '#6b8e23', '#b8860b', '#1e90ff', '#d2691e', '#8a2be2']
  let hash = 0
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0
  return palette[hash % palette.length]
}

/** "5 s ago", "3 min ago", or a date, for timestamps (seconds or ISO strings). */
export function ago (when) {
  const t = typeof when === 'number' ? when * 1000 : Date.parse(when)
  if (!Number.isFinite(t) || t <= 0) return '—'
  const s = Math.max(0, Math.round((Date.now() - t) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.floor(s / 60)} min ago`
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`
  return new Date(t).toLocaleString()
}

export function bytes (n) {
  if (!Number.isFinite(n)) return '—'
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}

/** Call `fn` at most once per `ms`, always with the latest arguments (trailing call kept). */
export function throttle (fn, ms) {
  let last = 0
  let timer = null
  let args = null
  const run = () => {
    timer = null
    last = Date.now()
    const a = args
    args = null
    fn(...a)
  }
  const throttled = (...a) => {
    args = a
    if (timer) return
    const wait = last + ms - Date.now()
    if (wait <= 0) run()
    else timer = setTimeout(run, wait)
  }
  /** Run a pending trailing call now (e.g. on pointerup). */
  throttled.flush = () => {
    if (timer) { clearTimeout(timer); run() }
  }
  throttled.cancel = () => {
    if (timer) clearTimeout(timer)
    timer = null
    args = null
  }
  return throttled
}
