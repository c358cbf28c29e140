// The notification bell: the stored list (REST) plus live `notification` events on the
// main Socket.IO namespace `/`, which also re-delivers unread ones on every connect.
import { io } from 'socket.io-client'
import { describeError, get, post } from '../lib/api.js'
import { ago, h, mount, svg } from '../lib/dom.js'
import { toast } from '../lib/toast.js'

const PAGE = 50

/** One readable line for a notification. */
export function describe (n) {
  const p = n.payload || {}
  const project = p.project_name ? `“${p.project_name}”` : 'a project'
  const by = p.by || 'someone'
  switch (n.kind) {
    case 'project.member_added': return `${by} added you to ${project} as ${p.role}.`
    case 'project.role_changed': return `${by} made you ${p.role === 'editor' ? 'an editor' : 'a ' + p.role} of ${project}.`
    case 'project.member_removed': return `${by} removed you from ${project}.`
    case 'project.deleted': return `${by} deleted ${project}.`
    case 'version.restored': return `${by} restored version ${p.from_version} of ${project}.`
    case 'version.saved': return `Version ${p.version} of ${project} was saved.`
    case 'room.closed': return `An admin closed the live room of ${project}.`
    default: {
      const text = p.message || p.text || p.title || p.body
      return text ? String(text) : `${n.kind}${Object.keys(p).length ? ': ' + JSON.stringify(p).slice(0, 120) : ''}`
    }
  }
}

export class Notifications {
  constructor (slot, { token, onOpenProject, onLive }) {
    this.token = token
    this.onOpenProject = onOpenProject
    this.onLive = onLive // called with each notification that is new to this page
    this.items = new Map() // id -> notification
    this.open = false
    this.badge = h('span', { class: 'bell-count', 'data-testid': 'unread-count', hidden: true })
    this.button = h('button', {
      class: 'bell', title: 'Notifications', 'aria-label': 'Notifications', 'data-testid': 'bell',
      onclick: () => this.toggle(),
    }, bellIcon(), this.badge)
    this.panel = h('div', { class: 'notif-panel', hidden: true, 'data-testid': 'notifications' })
    this.el = h('div', { class: 'notif' }, this.button, this.panel)
    slot.append(this.el)
    this.onDocClick = ev => { if (this.open && !this.el.contains(ev.target)) this.toggle(false) }
    document.addEventListener('pointerdown', this.onDocClick)
  }

  async start () {
    try {
      const page = await get(`/notifications?limit=${PAGE}`)
      for (const n of page.items) this.items.set(n.id, n)
    } catch (err) {
      console.warn('notifications:', describeError(err))
    }
    this.render()
    this.socket = io(location.origin, { auth: { token: this.token }, transports: ['websocket'] })
    this.socket.on('notification', n => this.receive(n))
    this.socket.on('connect_error', err => {
      if (err && err.data && err.data.error) console.warn('notifications refused:', describeError(err.data))
    })
  }

  destroy () {
    if (this.socket) this.socket.disconnect()
    document.removeEventListener('pointerdown', this.onDocClick)
    this.el.remove()
  }

  receive (n) {
    const known = this.items.has(n.id)
    this.items.set(n.id, { ...this.items.get(n.id), ...n })
    this.render()
    // Unread ones are re-delivered on every connect: only toast what is new to us.
    if (!known && !n.read_at) {
      toast(describe(n), { kind: 'notification', title: 'Notification' })
      this.onLive(n)
    }
  }

  get unread () {
    return [...this.items.values()].filter(n => !n.read_at).length
  }

  toggle (open = !this.open) {
    this.open = open
    this.panel.hidden = !open
  }

  async markRead (n) {
    if (n.read_at) return
    try {
      const out = await post(`/notifications/${encodeURIComponent(n.id)}/read`)
      this.items.set(n.id, out)
    } catch (err) {
      toast(describeError(err), { kind: 'error' })
    }
    this.render()
  }

  async markAllRead () {
    try {
      await post('/notifications/read-all')
      const now = new Date().toISOString()
      for (const n of this.items.values()) if (!n.read_at) n.read_at = now
    } catch (err) {
      toast(describeError(err), { kind: 'error' })
    }
    this.render()
  }

  render () {
    const unread = this.unread
    this.badge.textContent = String(unread)
    this.badge.hidden = unread === 0
    const items = [...this.items.values()].sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at))
    mount(this.panel,
      h('div', { class: 'panel-head' }, h('h2', {}, 'Notifications'),
        unread ? h('button', { class: 'link', onclick: () => this.markAllRead() }, 'Mark all read') : null),
      items.length
        ? h('ul', { class: 'notif-list' }, items.map(n => h('li', {
          class: n.read_at ? 'read' : 'unread',
          'data-id': n.id,
          'data-kind': n.kind,
          onclick: () => {
            this.markRead(n)
            const pid = n.payload && n.payload.project_id
            if (pid && !['project.deleted', 'project.member_removed'].includes(n.kind)) this.onOpenProject(pid)
          },
        }, h('div', {}, describe(n)), h('div', { class: 'muted small' }, ago(n.created_at)))))
        : h('p', { class: 'muted' }, 'Nothing yet.'))
  }
}

function bellIcon () {
  return svg('svg', { viewBox: '0 0 24 24', width: 20, height: 20, 'aria-hidden': 'true', class: 'bell-icon' },
    svg('path', { d: 'M6 16V11a6 6 0 0 1 12 0v5l1.5 2h-15z', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.8, 'stroke-linejoin': 'round' }),
    svg('path', { d: 'M10 20a2 2 0 0 0 4 0', fill: 'none', stroke: 'currentColor', 'stroke-width': 1.8 }))
}
