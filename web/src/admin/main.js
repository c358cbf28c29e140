// The admin dashboard (served at /admin): live rooms across the cluster, one room's
// users and presence, and the admin actions.
//   #/             the rooms table
//   #/room/<id>    one room
//
// Live data: GET /api/v1/admin/rooms once a second. The registry behind it is refreshed
// by every instance's heartbeat (COLLAB_HEARTBEAT_S, 2 s by default), so polling faster
// would show nothing new.
import '../styles.css'
import { ApiError, describeError, get } from '../lib/api.js'
import { h, mount } from '../lib/dom.js'
import { requireUser, signOut } from '../lib/signin.js'
import { RoomPage } from './room.js'
import { RoomsTable } from './rooms.js'

const POLL_MS = 1000

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

  /** One fetch of the cluster view (the loop below, and after an action). */
  async function refresh () {
    try {
      data = await get('/admin/rooms')
      live.textContent = `live · ${new Date().toLocaleTimeString()}`
      live.dataset.state = 'ok'
      for (const row of data.rooms) names.want(row.project_id)
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return signOut()
      live.textContent = `cannot reach the server (${describeError(err)}), retrying`
      live.dataset.state = 'error'
    }
    render()
  }

  async function loop () {
    await refresh()
    setTimeout(loop, POLL_MS)
  }

  window.addEventListener('hashchange', render)
  render()
  loop()
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

  want (id) {
    if (this.names.has(id)) return
    this.names.set(id, null)
    get(`/projects/${encodeURIComponent(id)}`)
      .then(p => this.names.set(id, p.name))
      .catch(err => this.names.set(id, err.status === 404 ? '(deleted)' : null))
      .finally(() => this.onChange())
  }
}

main()
