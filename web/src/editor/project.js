// One open project: toolbar, canvas, side panels, presence avatars, saved indicator.
//
// Read-only mode comes from the project role (viewers) or from the server refusing an
// edit (FORBIDDEN: an admin made the room read-only, or our role was lowered). After a
// refusal the view is rebuilt on a fresh doc from the server, so it shows only what the
// server holds, never the refused local change.
import { describeError, get, tokenStore } from '../lib/api.js'
import { colorFor, h, initials, mount } from '../lib/dom.js'
import { signOut } from '../lib/signin.js'
import { toast } from '../lib/toast.js'
import { Canvas } from './canvas.js'
import { MembersPanel } from './members.js'
import * as model from './model.js'
import { NODE_TYPES } from './nodetypes.js'
import { ParamsPanel } from './params.js'
import { peerUsers } from './presence.js'
import { Room } from './room.js'
import { VersionsPanel } from './versions.js'

export class ProjectView {
  /**
   * @param {HTMLElement} container
   * @param {object} o
   * @param {string} o.projectId
   * @param {object} o.me               GET /me
   * @param {object} o.slots            header slots: {presence, status}
   * @param {(crumbs: Array) => void} o.setCrumbs
   */
  constructor (container, { projectId, me, slots, setCrumbs }) {
    this.projectId = projectId
    this.me = me
    this.slots = slots
    this.setCrumbs = setCrumbs
    this.generation = 0 // bumped by each (re)start: a slower earlier start gives way
    this.el = h('main', { class: 'project-view' }, h('p', { class: 'muted pad' }, 'Opening…'))
    container.append(this.el)
    this.start({ readOnlyReason: null })
  }

  async start ({ readOnlyReason }) {
    const generation = ++this.generation
    let project
    try {
      project = await get(`/projects/${encodeURIComponent(this.projectId)}`)
    } catch (err) {
      if (generation !== this.generation || this.destroyed) return
      this.fail(err.status === 404 ? 'This project does not exist (any more).'
        : err.status === 403 ? 'You are not a member of this project.' : describeError(err))
      return
    }
    if (generation !== this.generation || this.destroyed) return
    this.project = project
    const viewer = project.role === 'viewer'
    this.readOnly = viewer || Boolean(readOnlyReason)
    this.readOnlyReason = viewer ? 'You are a viewer: you see live edits but cannot change the graph.' : readOnlyReason
    document.title = `${project.name} · collab`
    this.setCrumbs([{ text: project.name, role: project.role, readOnly: this.readOnly }])
    this.build()
  }

  fail (message) {
    this.setCrumbs([])
    mount(this.el, h('div', { class: 'empty' }, h('p', { class: 'form-error', role: 'alert' }, message),
      h('a', { href: '#/' }, '← All projects')))
  }

  build () {
    const room = this.room = new Room({
      projectId: this.projectId,
      token: tokenStore.get(),
      user: { name: this.me.name, color: colorFor(this.me.user_id) },
      onSaveState: state => this.showSaveState(state),
      onServerError: err => this.serverError(err),
      onRefused: err => this.refused(err),
      onServerDisconnect: err => this.banner(
        `Disconnected by the server${err ? `: ${err.message}` : '.'}`,
        h('button', { onclick: () => { this.defaultBanner(); room.reconnect() } }, 'Reconnect')),
    })

    // Layout: banner, toolbar, canvas | side panels
    this.bannerEl = h('div', { class: 'banner', hidden: true, role: 'status', 'data-testid': 'banner' })
    const toolbar = h('div', { class: 'toolbar', 'data-testid': 'toolbar' },
      h('span', { class: 'toolbar-label' }, 'Add'),
      Object.keys(NODE_TYPES).map(type => h('button', {
        class: 'palette', 'data-testid': `add-${type}`, disabled: this.readOnly,
        title: `Add a ${type} node`,
        onclick: () => this.addNode(type),
      }, type)),
      h('span', { class: 'spacer' }),
      h('button', { title: 'Delete the selected node or edge (Delete)', disabled: this.readOnly, 'data-testid': 'delete-selection', onclick: () => this.canvas.deleteSelection() }, 'Delete'),
      h('button', { class: 'icon', title: 'Zoom out', 'aria-label': 'Zoom out', onclick: () => this.canvas.zoomBy(1 / 1.25) }, '−'),
      h('button', { class: 'icon', title: 'Zoom in', 'aria-label': 'Zoom in', onclick: () => this.canvas.zoomBy(1.25) }, '+'))
    const stage = h('div', { class: 'stage' })
    const tabs = h('nav', { class: 'tabs', role: 'tablist' })
    const panels = h('div', { class: 'panels' })
    const side = h('aside', { class: 'side' }, tabs, panels)
    mount(this.el, this.bannerEl, toolbar, h('div', { class: 'workspace' }, stage, side))
    this.defaultBanner()

    this.params = new ParamsPanel(panels, room.doc, {
      readOnly: this.readOnly,
      onDelete: id => { model.deleteNode(room.doc, id); this.canvas.select(null) },
    })
    this.versions = new VersionsPanel(panels, this.projectId, { readOnly: this.readOnly })
    const canManage = this.project.role === 'owner' || this.project.role === 'admin'
    this.members = new MembersPanel(panels, this.projectId, { canManage })
    this.canvas = new Canvas(stage, room, {
      readOnly: this.readOnly,
      onSelect: id => { this.params.show(id); if (id) this.showTab('node') },
    })
    this.canvas.setReadOnly(this.readOnly)

    this.tabs = { node: this.params, versions: this.versions, members: this.members }
    for (const [name, label] of [['node', 'Node'], ['versions', 'Versions'], ['members', 'Members']]) {
      tabs.append(h('button', { role: 'tab', 'data-tab': name, onclick: () => this.showTab(name) }, label))
    }
    this.tabBar = tabs
    this.showTab('node')

    // Presence avatars in the header
    this.avatars = h('div', { class: 'avatars', 'data-testid': 'avatars' })
    this.saveEl = h('div', { class: 'save-status', id: 'save-status', 'data-testid': 'save-status' })
    this.slots.presence.replaceChildren(this.avatars)
    this.slots.status.replaceChildren(this.saveEl)
    this.onAwareness = () => this.renderAvatars()
    room.awareness.on('change', this.onAwareness)
    this.renderAvatars()
    this.showSaveState(room.save.state)
    room.connect()
  }

  showTab (name) {
    for (const [key, panel] of Object.entries(this.tabs)) panel.el.hidden = key !== name
    for (const b of this.tabBar.children) b.setAttribute('aria-selected', String(b.dataset.tab === name))
    if (name === 'versions') this.versions.load()
    if (name === 'members') this.members.load()
  }

  addNode (type) {
    const at = this.canvas.freeSpot()
    const id = model.addNode(this.room.doc, type, at.x, at.y)
    this.canvas.select(id)
  }

  renderAvatars () {
    const mine = { id: this.me.user_id, name: this.me.name, color: colorFor(this.me.user_id) }
    const others = peerUsers(this.room.awareness).filter(u => u.id !== mine.id)
    const avatar = (u, me) => h('span', {
      class: 'avatar' + (me ? ' me' : ''),
      'data-user-id': u.id,
      title: me ? `${u.name} (you)` : u.name,
      style: `background:${u.color}`,
    }, initials(u.name))
    mount(this.avatars, avatar(mine, true), others.map(u => avatar(u, false)))
  }

  showSaveState (state) {
    if (!this.saveEl) return
    this.saveEl.dataset.state = state.kind
    mount(this.saveEl, h('span', { class: 'dot' }), h('span', { class: 'save-text' }, state.text),
      state.kind === 'error' ? h('button', { class: 'link', onclick: () => this.room.retrySave() }, 'Retry') : null)
  }

  /** The banner when nothing is wrong: why we are read-only, if we are. */
  defaultBanner () {
    if (!this.readOnly) return this.banner(null)
    this.banner(this.readOnlyReason, this.project.role !== 'viewer'
      ? h('button', { onclick: () => this.restart({ readOnlyReason: null }) }, 'Try editing again')
      : null)
  }

  banner (message, action = null) {
    if (!this.bannerEl) return
    this.bannerEl.hidden = !message
    mount(this.bannerEl, message ? h('span', {}, message) : null, action)
  }

  serverError (err) {
    const reason = err.details && err.details.reason
    if (err.code === 'FORBIDDEN' && !reason && !this.readOnly) {
      toast(err.message, { kind: 'error', title: 'Read-only' })
      this.restart({ readOnlyReason: `Read-only: ${err.message}.` })
      return
    }
    toast(err.message, { kind: 'error', title: err.code })
  }

  refused (err) {
    if (err.code === 'UNAUTHENTICATED') {
      this.banner(`Your sign-in is no longer valid (${err.message}).`,
        h('button', { onclick: signOut }, 'Sign in again'))
    } else {
      this.fail(`The server refused to open this project: ${err.message}`)
    }
  }

  /** A live notification: a new role in this project takes effect right away. */
  notified (n) {
    const p = n.payload || {}
    if (p.project_id !== this.projectId || !this.room || p.role === this.project.role) return
    if (n.kind === 'project.role_changed' || n.kind === 'project.member_added') {
      this.restart({ readOnlyReason: null })
    }
  }

  /** Rebuild on a fresh doc (after a refusal, or to try editing again). */
  restart ({ readOnlyReason }) {
    this.teardown()
    mount(this.el, h('p', { class: 'muted pad' }, 'Reopening…'))
    this.start({ readOnlyReason })
  }

  teardown () {
    if (!this.room) return
    this.room.awareness.off('change', this.onAwareness)
    this.canvas.destroy()
    this.params.destroy()
    this.versions.destroy()
    this.members.destroy()
    this.room.destroy()
    this.room = null
    this.saveEl = null
    this.bannerEl = null
    this.slots.presence.replaceChildren()
    this.slots.status.replaceChildren()
  }

  destroy () {
    this.destroyed = true
    this.teardown()
    this.el.remove()
  }
}
