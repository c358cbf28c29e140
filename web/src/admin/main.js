// The admin dashboard (served at /admin): live rooms across the cluster, one room's
// users and presence, and the admin actions.
//   #/             the rooms table
//   #/room/<id>    one room
//
// Live data: a socket on the main namespace "/" subscribes to the server's room feed
// (`subscribe-rooms`); every instance's registry heartbeat (COLLAB_HEARTBEAT_S) then
// pushes the cluster view as a `rooms` event. After an action the page also fetches
// GET /api/v1/admin/rooms once, so the result shows without waiting for the next beat.
import { io } from 'socket.io-client'
import '../styles.css'
import { ApiError, describeError, get, tokenStore } from '../lib/api.js'
import { h, mount } from '../lib/dom.js'
import { requireUser, signOut } from '../lib/signin.js'
import { RoomPage } from './room.js'
import { RoomsTable } from './rooms.js'

async function main () {
  const root = document.getElementById('app')
  const me = await requireUser(root, { admin: true })

  const live = h('span', { class: 'live', 'data-testid': 'live' }, 'connecting…')
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/' }, 'collab admin'),
    h('span', { class: 'spacer' }), live,
    h('div', { class: 'user-chip' },
      h('span', { class: 'me-name', title: me.user_id }, me.name),
      h('a', { class: 'link', href: '/' }, 'Editor'),
      h('button', { class: 'link', onclick: signOut }, 'Sign out')))
  const body = h('main', { class: 'admin-view' })
  mount(root, header, body)

  const names = new ProjectNames(() => render())
  const table = new RoomsTable(names)
  const roomPage = new RoomPage(names, { refresh })
  let data = null

  function render () {
    const match = /^#\/room\/([^/?#]+)/.exec(location.hash)
    if (match) {
      const pid = decodeURIComponent(match[1])
      roomPage.update(pid, data)
      if (body.firstChild !== roomPage.el) mount(body, roomPage.el)
    } else {
      table.update(data)
      if (body.firstChild !== table.el) mount(body, table.el)
    }
  }

  function show (view) {
    data = view
    live.textContent = `live · ${new Date().toLocaleTimeString()}`
    live.dataset.state = 'ok'
    for (const row of data.rooms) names.want(row.project_id, row.project_name)
    render()
  }

  /** One fetch of the cluster view (after an action). */
  async function refresh () {
    try {
      show(await get('/admin/rooms'))
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return signOut()
      live.textContent = `cannot reach the server (${describeError(err)})`
      live.dataset.state = 'error'
    }
  }

  const socket = io(location.origin, { auth: { token: tokenStore.get() }, transports: ['websocket'] })
  socket.on('connect', () => {
    socket.emit('subscribe-rooms', {}, (reply) => {
      if (reply && reply.ok) show(reply.view)
      else if (reply && reply.error) signOut()
    })
  })
  socket.on('rooms', show)
  socket.on('disconnect', () => {
    live.textContent = 'disconnected, reconnecting…'
    live.dataset.state = 'error'
  })
  socket.on('connect_error', (err) => {
    if (err && err.data && err.data.error && err.data.error.code === 'UNAUTHENTICATED') return signOut()
    live.textContent = `cannot reach the server (${err.message}), retrying`
    live.dataset.state = 'error'
  })

  window.addEventListener('hashchange', render)
  render()
}

/** Project names for ids (admins may read any project); fetched once per id. */
class ProjectNames {
  constructor (onChange) {
    this.onChange = onChange
    this.names = new Map()
  }

  get (id) {
    return this.names.get(id)
  }

  want (id, known) {
    if (known) { this.names.set(id, known); return }
    if (this.names.has(id)) return
    this.names.set(id, null)
    get(`/projects/${encodeURIComponent(id)}`)
      .then(p => this.names.set(id, p.name))
      .catch(err => this.names.set(id, err.status === 404 ? '(deleted)' : null))
      .finally(() => this.onChange())
  }
}

main()
