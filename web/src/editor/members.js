// The "Members" panel: who has access; owners (and admins) add, change and remove.
// Role changes take effect live on the server (a downgraded editor becomes read-only).
import { del, describeError, get, put } from '../lib/api.js'
import { h, mount } from '../lib/dom.js'
import { toast } from '../lib/toast.js'

export class MembersPanel {
  constructor (container, projectId, { canManage }) {
    this.el = h('section', { class: 'panel members-panel', 'data-testid': 'members-panel' })
    container.append(this.el)
    this.projectId = projectId
    this.canManage = canManage
    this.items = []
    this.error = null
    this.render()
  }

  destroy () { this.el.remove() }

  base () { return `/projects/${encodeURIComponent(this.projectId)}/members` }

  async load () {
    try {
      this.items = (await get(this.base())).items
      this.error = null
    } catch (err) {
      this.error = describeError(err)
    }
    this.render()
  }

  async setRole (userId, role) {
    try {
      await put(`${this.base()}/${encodeURIComponent(userId)}`, { role })
      toast(`${userId} is now ${role === 'editor' ? 'an editor' : 'a viewer'}.`)
    } catch (err) {
      toast(describeError(err), { kind: 'error', title: 'Could not change the role' })
    }
    await this.load()
  }

  async remove (userId) {
    try {
      await del(`${this.base()}/${encodeURIComponent(userId)}`)
      toast(`${userId} was removed.`)
    } catch (err) {
      toast(describeError(err), { kind: 'error', title: 'Could not remove the member' })
    }
    await this.load()
  }

  render () {
    const roleSelect = (value, onchange) => h('select', { onchange, 'aria-label': 'Role' },
      h('option', { value: 'editor', selected: value === 'editor' }, 'editor'),
      h('option', { value: 'viewer', selected: value === 'viewer' }, 'viewer'))

    const rows = this.items.map(m => h('li', { 'data-user-id': m.user_id },
      h('span', { class: 'member-name' }, m.user_id),
      this.canManage && m.role !== 'owner'
        ? [roleSelect(m.role, ev => this.setRole(m.user_id, ev.target.value)),
            h('button', { class: 'icon', title: `Remove ${m.user_id}`, 'aria-label': `Remove ${m.user_id}`, onclick: () => this.remove(m.user_id) }, '×')]
        : h('span', { class: 'badge' }, m.role)))

    let addForm = null
    if (this.canManage) {
      const user = h('input', { placeholder: 'user id', 'aria-label': 'User id', required: true })
      const role = roleSelect('editor')
      addForm = h('form', {
        class: 'inline-form',
        onsubmit: ev => { ev.preventDefault(); if (user.value.trim()) this.setRole(user.value.trim(), role.value) },
      }, user, role, h('button', { class: 'primary', type: 'submit' }, 'Add'))
    }

    mount(this.el,
      h('div', { class: 'panel-head' }, h('h2', {}, 'Members'),
        h('button', { class: 'icon', title: 'Refresh', 'aria-label': 'Refresh members', onclick: () => this.load() }, '↻')),
      this.error ? h('p', { class: 'form-error' }, this.error) : null,
      h('ul', { class: 'member-list' }, rows),
      addForm,
      this.canManage ? null : h('p', { class: 'muted small' }, 'Only the owner can change members.'))
  }
}
