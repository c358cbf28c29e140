// The "Node" panel: the selected node's type, label and parameters.
//
// Inputs write to the doc on `change` (Enter or leaving the field), one transaction each.
// Remote changes update the fields live, except the one being typed in.
import * as model from './model.js'
import { h, mount } from '../lib/dom.js'

function kindOf (value) {
  if (typeof value === 'number') return 'number'
  if (typeof value === 'boolean') return 'boolean'
  if (typeof value === 'string') return 'string'
  return 'json'
}

export class ParamsPanel {
  constructor (container, doc, { readOnly, onDelete }) {
    this.el = h('section', { class: 'panel params-panel', 'data-testid': 'params-panel' })
    container.append(this.el)
    this.doc = doc
    this.readOnly = readOnly
    this.onDelete = onDelete
    this.nodeId = null
    this.shape = '' // node id + param names and kinds: rebuild the form when it changes
    this.inputs = new Map() // field name -> input element
    this.onDoc = () => this.refresh()
    model.roots(doc).nodes.observeDeep(this.onDoc)
    this.refresh()
  }

  destroy () {
    model.roots(this.doc).nodes.unobserveDeep(this.onDoc)
    this.el.remove()
  }

  setReadOnly (readOnly) {
    this.readOnly = readOnly
    this.shape = ''
    this.refresh()
  }

  show (nodeId) {
    this.nodeId = nodeId
    this.refresh()
  }

  refresh () {
    const y = this.nodeId ? model.roots(this.doc).nodes.get(this.nodeId) : null
    const node = y ? model.readNode(y) : null
    if (!node) {
      this.shape = ''
      this.inputs.clear()
      mount(this.el, h('h2', {}, 'Node'),
        h('p', { class: 'muted' }, this.readOnly
          ? 'Select a node to see its parameters.'
          : 'Select a node to edit its parameters. Add nodes from the toolbar; drag from an output (right) to an input (left) to connect them; click an edge and press Delete to disconnect it.'))
      return
    }
    const params = Object.entries(node.params)
    const shape = JSON.stringify([this.nodeId, this.readOnly, params.map(([k, v]) => [k, kindOf(v)])])
    if (shape !== this.shape) {
      this.shape = shape
      this.build(node, params)
    }
    // Live values, except in the field being edited.
    this.setValue('label', node.label ?? '')
    for (const [k, v] of params) this.setValue('param:' + k, v)
  }

  setValue (name, value) {
    const input = this.inputs.get(name)
    if (!input || input === document.activeElement) return
    if (input.type === 'checkbox') input.checked = Boolean(value)
    else input.value = input.dataset.kind === 'json' ? JSON.stringify(value) : String(value)
  }

  build (node, params) {
    const id = this.nodeId
    const ro = this.readOnly
    this.inputs.clear()
    const label = h('input', {
      id: 'param-label', disabled: ro, placeholder: node.type,
      onchange: ev => model.setLabel(this.doc, id, ev.target.value.trim()),
    })
    this.inputs.set('label', label)
    const rows = params.map(([key, value]) => {
      const kind = kindOf(value)
      const fieldId = `param-${key}`
      let input
      if (kind === 'boolean') {
        input = h('input', { type: 'checkbox', id: fieldId, disabled: ro, onchange: ev => model.setParam(this.doc, id, key, ev.target.checked) })
      } else {
        input = h('input', {
          id: fieldId,
          type: kind === 'number' ? 'number' : 'text',
          step: kind === 'number' ? 'any' : null,
          disabled: ro,
          onchange: ev => {
            const raw = ev.target.value
            let v = raw
            if (kind === 'number') {
              v = Number(raw)
              if (raw.trim() === '' || !Number.isFinite(v)) { this.shape = ''; return this.refresh() }
            } else if (kind === 'json') {
              try { v = JSON.parse(raw) } catch { this.shape = ''; return this.refresh() }
            }
            model.setParam(this.doc, id, key, v)
          },
        })
      }
      input.dataset.kind = kind
      input.dataset.param = key
      this.inputs.set('param:' + key, input)
      return h('div', { class: 'field' },
        h('label', { for: fieldId }, key, h('span', { class: 'kind' }, kind)),
        h('div', { class: 'field-row' }, input,
          ro ? null : h('button', { class: 'icon', title: `Remove ${key}`, 'aria-label': `Remove ${key}`, onclick: () => model.setParam(this.doc, id, key, undefined) }, '×')))
    })

    const newKey = h('input', { placeholder: 'name', 'aria-label': 'New parameter name', pattern: '[A-Za-z_][A-Za-z0-9_]*' })
    const newKind = h('select', { 'aria-label': 'New parameter type' },
      h('option', { value: 'number' }, 'number'), h('option', { value: 'string' }, 'text'), h('option', { value: 'boolean' }, 'on/off'))
    const addForm = ro ? null : h('form', {
      class: 'add-param',
      onsubmit: ev => {
        ev.preventDefault()
        const key = newKey.value.trim()
        if (!key || key in node.params) return
        const initial = { number: 0, string: '', boolean: false }[newKind.value]
        model.setParam(this.doc, id, key, initial)
      },
    }, newKey, newKind, h('button', { type: 'submit' }, 'Add'))

    mount(this.el,
      h('h2', {}, node.label || node.type, h('span', { class: 'muted small' }, ` ${node.type}`)),
      h('p', { class: 'muted small mono' }, id),
      h('div', { class: 'field' }, h('label', { for: 'param-label' }, 'Label'), label),
      h('h3', {}, 'Parameters'),
      rows.length ? rows : h('p', { class: 'muted' }, 'No parameters.'),
      addForm,
      ro ? null : h('button', { class: 'danger', 'data-testid': 'delete-node', onclick: () => this.onDelete(id) }, 'Delete node'))
  }
}
