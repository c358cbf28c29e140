// The rooms table: one row per live project across the cluster, sortable.
import { ago, bytes, h, mount, patch } from '../lib/dom.js'

// Column: label, sort value, cell renderer. Numbers sort descending first.
const COLUMNS = [
  { key: 'project', label: 'Project', value: (r, n) => (n.get(r.project_id) || r.project_id).toLowerCase(), text: true },
  { key: 'instances', label: 'Instances', value: r => r.instances.length },
  { key: 'connections', label: 'Connections', value: r => r.connections },
  { key: 'users', label: 'Users', value: r => r.users.length },
  { key: 'nodes', label: 'Nodes / edges', value: r => r.node_count },
  { key: 'size', label: 'Doc size', value: r => r.doc_bytes },
  { key: 'updates', label: 'Updates/s', value: r => r.updates_per_s },
  { key: 'lag', label: 'Commit lag', value: r => r.commit_lag_s },
  { key: 'activity', label: 'Last activity', value: r => r.last_activity },
]

export class RoomsTable {
  constructor (names) {
    this.names = names
    this.sort = { key: 'activity', desc: true }
    this.el = h('section', { class: 'rooms', 'data-testid': 'rooms' })
    this.data = null
  }

  setSort (key) {
    const col = COLUMNS.find(c => c.key === key)
    this.sort = this.sort.key === key ? { key, desc: !this.sort.desc } : { key, desc: !col.text }
    this.update(this.data)
  }

  update (data) {
    this.data = data
    if (!data) return mount(this.el, h('p', { class: 'muted pad' }, 'Loading…'))
    const col = COLUMNS.find(c => c.key === this.sort.key)
    const rows = [...data.rooms].sort((a, b) => {
      const x = col.value(a, this.names.names)
      const y = col.value(b, this.names.names)
      const cmp = x < y ? -1 : x > y ? 1 : 0
      return this.sort.desc ? -cmp : cmp
    })
    const totalConns = data.rooms.reduce((s, r) => s + r.connections, 0)

    patch(this.el,
      h('div', { class: 'page-head', 'data-keep': 'head' }, h('h1', {}, 'Live rooms'),
        h('p', { class: 'muted', 'data-testid': 'cluster-summary' },
          `${data.rooms.length} room${data.rooms.length === 1 ? '' : 's'} · ${totalConns} connection${totalConns === 1 ? '' : 's'} · ` +
          `${data.instances.length} instance${data.instances.length === 1 ? '' : 's'}: ` +
          (data.instances.map(i => `${i.instance_id} (${i.rooms})`).join(', ') || 'none'))),
      rows.length === 0
        ? h('p', { class: 'empty muted' }, 'No live rooms: nobody has a project open right now.')
        : h('table', { class: 'table rooms-table', 'data-keep': 'rooms' },
          h('thead', { 'data-keep': 'head' }, h('tr', {}, COLUMNS.map(c => h('th', {
            class: 'sortable' + (c.key === this.sort.key ? ' sorted' : ''),
            'aria-sort': c.key === this.sort.key ? (this.sort.desc ? 'descending' : 'ascending') : 'none',
            'data-sort': c.key,
            onclick: () => this.setSort(c.key),
          }, c.label, c.key === this.sort.key ? (this.sort.desc ? ' ▾' : ' ▴') : '')))),
          h('tbody', { 'data-keep': 'rows' }, rows.map(r => this.row(r)))))
  }

  row (r) {
    const name = this.names.get(r.project_id)
    const open = () => { location.hash = `#/room/${encodeURIComponent(r.project_id)}` }
    return h('tr', { 'data-project-id': r.project_id, class: 'clickable', onclick: open },
      h('td', {}, h('a', { href: `#/room/${encodeURIComponent(r.project_id)}` }, name || r.project_id),
        name ? h('div', { class: 'muted small mono' }, r.project_id) : null,
        r.read_only ? h('span', { class: 'badge read-only' }, 'read-only') : null),
      h('td', { class: 'mono small' }, r.instances.map(i => h('div', {}, `${i.instance_id} (${i.connections})`))),
      h('td', { class: 'num' }, r.connections),
      h('td', { class: 'users-cell' }, r.users.map(u => h('span', { class: 'user-tag', 'data-user-id': u.id, title: `${u.id} · ${u.role}` }, u.name))),
      h('td', { class: 'num' }, `${r.node_count} / ${r.edge_count}`),
      h('td', { class: 'num' }, bytes(r.doc_bytes)),
      h('td', { class: 'num' }, r.updates_per_s.toFixed(1)),
      h('td', { class: 'num' }, `${(r.commit_lag_s * 1000).toFixed(0)} ms`, r.commit_pending ? h('div', { class: 'muted small' }, `${r.commit_pending} pending`) : null),
      h('td', {}, r.last_activity ? ago(r.last_activity) : '—'))
  }
}
