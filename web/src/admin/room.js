// One live room: its numbers, its users with their presence, and the admin actions
// (snapshot, kick a user, close the room, read-only on/off).
import { describeError, get, post } from '../lib/api.js'
import { ago, bytes, h, mount, patch } from '../lib/dom.js'
import { toast } from '../lib/toast.js'

const CONFIRM_MS = 4000 // a destructive button asks for a second click within this time
const GRAPH_REFRESH_MS = 3000 // node names for presence: fetched at most this often

export class RoomPage {
  constructor (names, { refresh }) {
    this.names = names
    this.refresh = refresh
    this.el = h('section', { class: 'room-page', 'data-testid': 'room-page' })
    this.armed = null // the action waiting for its confirming click
    this.busy = false
    this.nodeNames = new Map() // node id -> label or type, for the presence column
    this.graphAt = 0
  }

  /** Learn the names of nodes that presence refers to (the admin may read any graph). */
  async loadNodeNames (ids) {
    if (ids.every(id => this.nodeNames.has(id)) || Date.now() - this.graphAt < GRAPH_REFRESH_MS) return
    this.graphAt = Date.now()
    try {
      const graph = await get(`/projects/${encodeURIComponent(this.projectId)}/graph`)
      for (const [id, n] of Object.entries(graph.nodes)) this.nodeNames.set(id, n.label || n.type || id)
      this.update(this.projectId, this.data)
    } catch {
      // names are a nicety: ids are shown meanwhile
    }
  }

  nodeName (id) {
    const name = this.nodeNames.get(id)
    return name ? `${name} (${id})` : id
  }

  async act (label, path, body) {
    this.busy = true
    try {
      const out = await post(`/admin/rooms/${encodeURIComponent(this.projectId)}/${path}`, body)
      toast(path === 'snapshot' ? `${label}: saved version ${out.version}.` : `${label}: done.`)
    } catch (err) {
      toast(describeError(err), { kind: 'error', title: label })
    }
    this.busy = false
    this.armed = null
    await this.refresh()
  }

  /** A button that needs a confirming second click. */
  confirmButton (key, label, confirmLabel, run, attrs = {}) {
    const armed = this.armed === key
    return h('button', {
      ...attrs,
      class: 'danger' + (armed ? ' armed' : ''),
      disabled: this.busy,
      onclick: () => {
        if (armed) return run()
        this.armed = key
        setTimeout(() => { if (this.armed === key) { this.armed = null; this.update(this.projectId, this.data) } }, CONFIRM_MS)
        this.update(this.projectId, this.data)
      },
    }, armed ? confirmLabel : label)
  }

  update (projectId, data) {
    if (projectId !== this.projectId) {
      this.armed = null
      this.nodeNames.clear()
      this.graphAt = 0
    }
    this.projectId = projectId
    this.data = data
    const name = this.names.get(projectId)
    this.names.want(projectId)
    const back = h('a', { href: '#/' }, '← All rooms')
    const title = h('h1', {}, name || projectId, name ? h('span', { class: 'muted small mono' }, ` ${projectId}`) : null)
    if (!data) return mount(this.el, back, title, h('p', { class: 'muted' }, 'Loading…'))
    const r = data.rooms.find(x => x.project_id === projectId)
    if (!r) {
      return mount(this.el, back, title,
        h('p', { class: 'empty muted', 'data-testid': 'no-room' }, 'No live room for this project right now (nobody has it open).'))
    }

    const referenced = r.users.flatMap(u => (u.presence || []).flatMap(p => [...(p.selected || []), p.dragging].filter(Boolean)))
    if (referenced.length) this.loadNodeNames(referenced)

    const stats = [
      ['Connections', r.connections],
      ['Users', r.users.length],
      ['Nodes / edges', `${r.node_count} / ${r.edge_count}`],
      ['Doc size', bytes(r.doc_bytes)],
      ['Updates/s', r.updates_per_s.toFixed(1)],
      ['Commit lag', `${(r.commit_lag_s * 1000).toFixed(0)} ms (${r.commit_pending} pending)`],
      ['Last activity', r.last_activity ? ago(r.last_activity) : '—'],
      ['Instances', r.instances.map(i => `${i.instance_id} (${i.connections})`).join(', ')],
    ]

    patch(this.el, back, title,
      r.read_only ? h('p', { class: 'banner', 'data-testid': 'room-read-only' }, 'This room is read-only: edits are refused.') : null,
      h('dl', { class: 'stats', 'data-keep': 'stats' }, stats.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v)))),
      h('div', { class: 'button-row', 'data-keep': 'actions' },
        h('button', { class: 'primary', disabled: this.busy, 'data-testid': 'snapshot', onclick: () => this.act('Snapshot', 'snapshot') }, 'Snapshot now'),
        h('button', {
          disabled: this.busy,
          'data-testid': 'read-only-toggle',
          onclick: () => this.act(r.read_only ? 'Writable again' : 'Read-only', 'read-only', { read_only: !r.read_only }),
        }, r.read_only ? 'Make writable' : 'Make read-only'),
        this.confirmButton('close', 'Close room', 'Click again to close', () => this.act('Close room', 'close'), { 'data-testid': 'close-room' })),
      h('h2', {}, 'Users'),
      h('table', { class: 'table users-table', 'data-keep': 'users' },
        h('thead', { 'data-keep': 'head' }, h('tr', {}, ['User', 'Role', 'Connections', 'Instances', 'Presence', ''].map(t => h('th', {}, t)))),
        h('tbody', { 'data-keep': 'rows' }, r.users.map(u => h('tr', { 'data-user-id': u.id },
          h('td', {}, h('strong', {}, u.name), h('div', { class: 'muted small mono' }, u.id)),
          h('td', {}, h('span', { class: `badge role-${u.role}` }, u.role)),
          h('td', { class: 'num' }, u.connections),
          h('td', { class: 'mono small' }, [...new Set(u.instances || [])].join(', ')),
          h('td', { class: 'presence-cell' }, (u.presence || []).map(p => h('div', {}, presenceText(p, id => this.nodeName(id))))),
          h('td', {}, this.confirmButton(`kick:${u.id}`, 'Kick', 'Click again to kick',
            () => this.act(`Kick ${u.name}`, 'kick', { user_id: u.id }), { 'data-testid': `kick-${u.id}` })))))))
  }
}

/** One line of a presence summary: what the user looks at and does. */
function presenceText (p, name) {
  const parts = []
  if (p.selected && p.selected.length) parts.push(`selected ${p.selected.map(name).join(', ')}`)
  if (p.dragging) parts.push(`dragging ${name(p.dragging)}`)
  if (p.pointer && Number.isFinite(p.pointer.x)) parts.push(`pointer at ${Math.round(p.pointer.x)}, ${Math.round(p.pointer.y)}`)
  if (p.viewport && Number.isFinite(p.viewport.zoom)) parts.push(`zoom ${p.viewport.zoom}`)
  return parts.join(' · ') || 'idle'
}
