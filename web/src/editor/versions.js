// The "Versions" panel: list, save, diff against the current graph, restore.
//
// A restore is a forward change made by the server; it reaches this page like any other
// edit, through the doc.
import { describeError, get, post } from '../lib/api.js'
import { ago, h, mount } from '../lib/dom.js'
import { toast } from '../lib/toast.js'

export class VersionsPanel {
  constructor (container, projectId, { readOnly }) {
    this.el = h('section', { class: 'panel versions-panel', 'data-testid': 'versions-panel' })
    container.append(this.el)
    this.projectId = projectId
    this.readOnly = readOnly
    this.items = []
    this.selected = null // version number shown in the diff
    this.diff = null
    this.error = null
    this.render()
  }

  destroy () { this.el.remove() }

  setReadOnly (readOnly) {
    this.readOnly = readOnly
    this.render()
  }

  base () { return `/projects/${encodeURIComponent(this.projectId)}/versions` }

  async load () {
    try {
      this.items = (await get(this.base() + '?limit=100')).items
      this.error = null
    } catch (err) {
      this.error = describeError(err)
    }
    this.render()
    if (this.selected !== null) await this.showDiff(this.selected)
  }

  async save (label) {
    try {
      const v = await post(this.base(), { label: label || null })
      toast(`Saved version ${v.version}${v.label ? ` “${v.label}”` : ''}.`)
      await this.load()
    } catch (err) {
      toast(describeError(err), { kind: 'error', title: 'Could not save a version' })
    }
  }

  async showDiff (version) {
    this.selected = version
    this.diff = null
    this.render()
    try {
      this.diff = await get(`${this.base()}/${version}/diff/current`)
    } catch (err) {
      this.diff = { error: describeError(err) }
    }
    if (this.selected === version) this.render()
  }

  async restore (version, nodes) {
    const what = nodes ? `${nodes.length} node${nodes.length === 1 ? '' : 's'} of version ${version}` : `version ${version}`
    try {
      const out = await post(`${this.base()}/${version}/restore`, nodes ? { nodes } : {})
      toast(`Restored ${what} (saved as version ${out.version.version}).`)
      await this.load()
    } catch (err) {
      toast(describeError(err), { kind: 'error', title: `Could not restore ${what}` })
    }
  }

  render () {
    const saveForm = this.readOnly ? null : (() => {
      const label = h('input', { placeholder: 'Label (optional)', 'aria-label': 'Version label', maxlength: 200 })
      return h('form', {
        class: 'inline-form',
        onsubmit: ev => { ev.preventDefault(); this.save(label.value.trim()); label.value = '' },
      }, label, h('button', { class: 'primary', type: 'submit' }, 'Save version'))
    })()

    const list = h('ol', { class: 'version-list' }, this.items.map(v =>
      h('li', {
        class: v.version === this.selected ? 'active' : null,
        'data-version': v.version,
        tabindex: 0,
        onclick: () => this.showDiff(v.version),
        onkeydown: ev => { if (ev.key === 'Enter') this.showDiff(v.version) },
      },
      h('div', {}, h('strong', {}, `v${v.version}`), ' ', v.label || h('span', { class: 'muted' }, 'unlabelled')),
      h('div', { class: 'muted small' },
        `${v.node_count} nodes · ${v.edge_count} edges · ${v.created_by || 'server'} · ${ago(v.created_at)}`))))

    mount(this.el,
      h('div', { class: 'panel-head' }, h('h2', {}, 'Versions'),
        h('button', { class: 'icon', title: 'Refresh', 'aria-label': 'Refresh versions', onclick: () => this.load() }, '↻')),
      saveForm,
      this.error ? h('p', { class: 'form-error' }, this.error) : null,
      this.items.length ? list : h('p', { class: 'muted' }, 'No versions yet.'),
      this.selected !== null ? this.renderDiff() : null)
  }

  renderDiff () {
    const n = this.selected
    const d = this.diff
    if (!d) return h('div', { class: 'diff' }, h('p', { class: 'muted' }, `Comparing v${n} with now…`))
    if (d.error) return h('div', { class: 'diff' }, h('p', { class: 'form-error' }, d.error))

    // Nodes that exist in the version can be restored one by one.
    const restorable = [
      ...d.nodes.removed.map(e => ({ id: e.id, name: nodeName(e.node, e.id), what: 'deleted since' })),
      ...d.nodes.changed.map(e => ({ id: e.id, name: e.name, what: describeChanges(e.changes) })),
    ]
    const checks = new Map()
    const section = (title, items) => items.length
      ? [h('h4', {}, title), h('ul', { class: 'diff-list' }, items)]
      : null

    return h('div', { class: 'diff', 'data-testid': 'version-diff' },
      h('h3', {}, `v${n} → now`),
      h('p', { class: 'diff-text', 'data-testid': 'diff-text' }, d.text),
      section('Nodes added since', d.nodes.added.map(e => h('li', {}, nodeName(e.node, e.id)))),
      section('Nodes in v' + n, restorable.map(r => {
        const box = this.readOnly ? null : h('input', { type: 'checkbox', value: r.id, 'aria-label': `Restore ${r.name}` })
        if (box) checks.set(r.id, box)
        return h('li', {}, h('label', { class: 'check' }, box, h('span', {}, h('strong', {}, r.name), ' ', h('span', { class: 'muted' }, r.what))))
      })),
      section('Edges', [
        ...d.edges.added.map(e => h('li', {}, `+ ${edgeText(e.edge)}`)),
        ...d.edges.removed.map(e => h('li', {}, `− ${edgeText(e.edge)}`)),
        ...d.edges.rewired.map(e => h('li', {}, `↺ ${edgeText(e.old)} → ${edgeText(e.new)}`)),
      ]),
      this.readOnly ? null : h('div', { class: 'button-row' },
        h('button', { class: 'primary', onclick: () => this.restore(n, null) }, `Restore v${n}`),
        restorable.length ? h('button', {
          onclick: () => {
            const ids = [...checks].filter(([, box]) => box.checked).map(([id]) => id)
            if (!ids.length) return toast('Tick the nodes to restore first.')
            this.restore(n, ids)
          },
        }, 'Restore selected nodes') : null))
  }
}

function nodeName (node, id) {
  return (node && (node.label || node.type)) || id
}

function edgeText (e) {
  if (!e) return '?'
  return `${e.source}.${e.sourceSocket} → ${e.target}.${e.targetSocket}`
}

function describeChanges (changes) {
  const parts = []
  if (changes.params) {
    const p = changes.params
    for (const [k, c] of Object.entries(p.changed || {})) parts.push(`${k} ${show(c.new)} (was ${show(c.old)})`)
    for (const k of Object.keys(p.added || {})) parts.push(`${k} added`)
    for (const k of Object.keys(p.removed || {})) parts.push(`${k} removed`)
  }
  if (changes.position) parts.push('moved')
  if (changes.label) parts.push('relabelled')
  if (changes.type) parts.push('type changed')
  return parts.join(', ') || 'changed'
}

function show (v) {
  return typeof v === 'string' ? `“${v}”` : JSON.stringify(v)
}
