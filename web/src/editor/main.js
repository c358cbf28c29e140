// The editor page (served at /): sign in, then route on the URL hash.
//   #/           my projects
//   #/p/<id>     one project open in the editor (a reload reopens it)
import '../styles.css'
import { tokenStore } from '../lib/api.js'
import { h, mount } from '../lib/dom.js'
import { requireUser, signOut } from '../lib/signin.js'
import { Notifications } from './notifications.js'
import { ProjectView } from './project.js'
import { ProjectsView } from './projects.js'

async function main () {
  const root = document.getElementById('app')
  const me = await requireUser(root)

  const crumbs = h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' })
  const slots = {
    presence: h('div', { class: 'slot-presence' }),
    status: h('div', { class: 'slot-status' }),
    bell: h('div', { class: 'slot-bell' }),
  }
  const userChip = h('div', { class: 'user-chip', 'data-testid': 'me', 'data-user-id': me.user_id },
    h('span', { class: 'me-name', title: me.user_id }, me.name, me.admin ? h('span', { class: 'badge' }, 'admin') : null),
    me.admin ? h('a', { href: '/admin', class: 'link' }, 'Admin') : null,
    h('button', { class: 'link', onclick: signOut }, 'Sign out'))
  const header = h('header', { class: 'topbar' },
    h('a', { class: 'brand', href: '#/' }, 'collab'), crumbs,
    h('span', { class: 'spacer' }), slots.presence, slots.status, slots.bell, userChip)
  const body = h('div', { class: 'body' })
  mount(root, header, body)

  function setCrumbs (items) {
    mount(crumbs, items.length ? h('a', { href: '#/' }, 'Projects') : null,
      items.map(c => [h('span', { class: 'sep' }, '›'),
        h('span', { class: 'crumb', 'data-testid': 'project-name' }, c.text),
        c.role ? h('span', { class: `badge role-${c.role}`, 'data-testid': 'role' }, c.role) : null,
        c.readOnly ? h('span', { class: 'badge read-only', 'data-testid': 'read-only' }, 'read-only') : null]))
  }

  let view = null // the current page: ProjectsView or ProjectView
  const notifications = new Notifications(slots.bell, {
    token: tokenStore.get(),
    onOpenProject: id => { location.hash = `#/p/${id}` },
    onLive: n => { if (view && view.notified) view.notified(n) },
  })
  notifications.start()

  function route () {
    const match = /^#\/p\/([^/?#]+)/.exec(location.hash)
    const projectId = match ? decodeURIComponent(match[1]) : null
    if (view && view.projectId === projectId && projectId) return
    if (view) view.destroy()
    view = projectId
      ? new ProjectView(body, { projectId, me, slots, setCrumbs })
      : new ProjectsView(body, { me, setCrumbs })
  }
  window.addEventListener('hashchange', route)
  route()
}

main()
