// The start page: my projects, and a form to create one.
import { describeError, get, post } from '../lib/api.js'
import { ago, h, mount } from '../lib/dom.js'

export class ProjectsView {
  constructor (container, { me, setCrumbs }) {
    this.el = h('main', { class: 'projects-view', 'data-testid': 'projects' })
    container.append(this.el)
    this.me = me
    this.items = []
    this.cursor = null
    this.error = null
    this.loading = true
    setCrumbs([])
    document.title = 'collab'
    this.render()
    this.load()
  }

  destroy () { this.el.remove() }

  /** Added to / removed from a project, or one deleted: the list changed. */
  notified (n) {
    if (n.kind.startsWith('project.')) this.load()
  }

  async load (more = false) {
    try {
      const page = await get('/projects?limit=100' + (more && this.cursor ? `&cursor=${encodeURIComponent(this.cursor)}` : ''))
      this.items = more ? [...this.items, ...page.items] : page.items
      this.cursor = page.next_cursor
      this.error = null
    } catch (err) {
      this.error = describeError(err)
    }
    this.loading = false
    this.render()
  }

  async create (name) {
    try {
      const project = await post('/projects', { name })
      location.hash = `#/p/${project.id}`
    } catch (err) {
      this.error = describeError(err)
      this.render()
    }
  }

  render () {
    const name = h('input', { id: 'new-project-name', placeholder: 'My graph', required: true, maxlength: 200, 'aria-label': 'Project name' })
    const form = h('form', {
      class: 'inline-form create-project',
      onsubmit: ev => { ev.preventDefault(); if (name.value.trim()) this.create(name.value.trim()) },
    }, name, h('button', { class: 'primary', type: 'submit' }, 'Create project'))

    let body
    if (this.loading) {
      body = h('p', { class: 'muted' }, 'Loading…')
    } else if (!this.items.length) {
      body = h('div', { class: 'empty' },
        h('p', {}, 'You have no projects yet.'),
        h('p', { class: 'muted' }, 'Create one above, or ask an owner to add you to theirs (as ', h('strong', {}, this.me.user_id), ').'))
    } else {
      body = h('table', { class: 'table project-list' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Project'), h('th', {}, 'Your role'), h('th', {}, 'Owner'), h('th', {}, 'Updated'))),
        h('tbody', {}, this.items.map(p => h('tr', { 'data-project-id': p.id },
          h('td', {}, h('a', { href: `#/p/${p.id}` }, p.name)),
          h('td', {}, h('span', { class: `badge role-${p.role}` }, p.role || '—')),
          h('td', {}, p.owner),
          h('td', { class: 'muted' }, ago(p.updated_at))))))
    }

    mount(this.el,
      h('div', { class: 'page-head' }, h('h1', {}, 'Projects'), form),
      this.error ? h('p', { class: 'form-error', role: 'alert' }, this.error) : null,
      body,
      this.cursor ? h('button', { onclick: () => this.load(true) }, 'Load more') : null)
  }
}
