// The graph canvas (SVG): renders what the Y.Doc holds plus the others' presence, and
// turns pointer input into document edits and awareness updates.
//
// Rendering is keyed: each node / edge / remote pointer keeps its SVG element between
// frames and only changed attributes are touched. A render is scheduled (one per
// animation frame) whenever the doc, the awareness or the local selection changes.
// Nothing is drawn from local state except UI affordances: the selection highlight, the
// rubber band of a connection being dragged, and the view transform (pan/zoom).
import * as model from './model.js'
import { typeInfo } from './nodetypes.js'
import { peers } from './presence.js'
import { setAttr, setText, svg, throttle } from '../lib/dom.js'

const W = 180 // node width
const HEADER = 26
const ROW = 16 // parameter row height
const SOCKET_GAP = 22
const PAD = 8
const MAX_ROWS = 5
const DRAG_WRITES_PER_S = 30 // node position writes while dragging
const POINTER_UPDATES_PER_S = 20 // awareness pointer updates
const CLICK_SLOP_PX = 3 // movement below this is a click, not a drag

function nodeSockets (id, node, edges) {
  const info = typeInfo(node.type)
  const inputs = [...info.inputs]
  const outputs = [...info.outputs]
  // Sockets named by edges but unknown to the type still get drawn (other clients).
  for (const e of edges) {
    if (e.target === id && !inputs.includes(e.targetSocket)) inputs.push(e.targetSocket)
    if (e.source === id && !outputs.includes(e.sourceSocket)) outputs.push(e.sourceSocket)
  }
  return { inputs, outputs }
}

function nodeHeight (rows, sockets) {
  const body = Math.max(Math.min(rows, MAX_ROWS + 1) * ROW, Math.max(sockets.inputs.length, sockets.outputs.length) * SOCKET_GAP)
  return HEADER + PAD * 2 + Math.max(body, ROW)
}

function socketY (i) {
  return HEADER + PAD + SOCKET_GAP * i + SOCKET_GAP / 2
}

function formatValue (v) {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(3).replace(/0+$/, '')
  if (typeof v === 'string') return v.length > 14 ? v.slice(0, 13) + '…' : v
  if (typeof v === 'boolean') return v ? 'on' : 'off'
  return JSON.stringify(v)?.slice(0, 14) ?? ''
}

export class Canvas {
  /**
   * @param {HTMLElement} container
   * @param {import('./room.js').Room} room
   * @param {{readOnly: boolean, onSelect: (nodeId: string|null) => void}} options
   */
  constructor (container, room, { readOnly, onSelect }) {
    this.room = room
    this.doc = room.doc
    this.awareness = room.awareness
    this.readOnly = readOnly
    this.onSelect = onSelect
    this.view = { x: 40, y: 40, zoom: 1 }
    this.selectedNode = null
    this.selectedEdge = null
    this.gesture = null // {kind: 'drag'|'connect'|'pan', ...}
    this.nodeEls = new Map()
    this.edgeEls = new Map()
    this.pointerEls = new Map()
    this.layout = new Map() // nodeId -> {x, y, h, inputs, outputs} of the last render
    this.frame = 0

    this.gEdges = svg('g', { class: 'edges' })
    this.draft = svg('path', { class: 'edge-draft', d: '' })
    this.gNodes = svg('g', { class: 'nodes' })
    this.gPointers = svg('g', { class: 'pointers' })
    this.gView = svg('g', { class: 'viewport' }, this.gEdges, this.draft, this.gNodes, this.gPointers)
    this.svg = svg('svg', {
      class: 'canvas',
      'data-testid': 'canvas',
      tabindex: 0,
      onpointerdown: ev => this.pointerDown(ev),
      onpointermove: ev => this.pointerMove(ev),
      onpointerup: ev => this.pointerUp(ev),
      onpointercancel: ev => this.pointerUp(ev),
      onpointerleave: () => { if (!this.gesture) this.sendPointer(null) },
      onwheel: ev => this.wheel(ev),
    }, svg('defs', {}, svg('pattern', { id: 'grid', width: 24, height: 24, patternUnits: 'userSpaceOnUse' },
      svg('circle', { cx: 1, cy: 1, r: 1, class: 'grid-dot' }))),
    svg('rect', { class: 'grid', width: '100%', height: '100%', fill: 'url(#grid)' }),
    this.gView)
    container.append(this.svg)

    this.writeMove = throttle((id, x, y) => model.moveNode(this.doc, id, x, y), 1000 / DRAG_WRITES_PER_S)
    this.sendPointer = throttle(p => this.awareness.setLocalStateField('pointer', p), 1000 / POINTER_UPDATES_PER_S)
    this.sendViewport = throttle(v => this.awareness.setLocalStateField('viewport', v), 250)

    const { nodes, edges } = model.roots(this.doc)
    this.onDoc = () => this.schedule()
    nodes.observeDeep(this.onDoc)
    edges.observeDeep(this.onDoc)
    this.awareness.on('change', this.onDoc)
    this.onKey = ev => this.key(ev)
    document.addEventListener('keydown', this.onKey)
    this.schedule()
  }

  destroy () {
    const { nodes, edges } = model.roots(this.doc)
    nodes.unobserveDeep(this.onDoc)
    edges.unobserveDeep(this.onDoc)
    this.awareness.off('change', this.onDoc)
    document.removeEventListener('keydown', this.onKey)
    cancelAnimationFrame(this.frame)
    this.writeMove.cancel()
    this.sendPointer.cancel()
    this.sendViewport.cancel()
    this.svg.remove()
  }

  setReadOnly (readOnly) {
    this.readOnly = readOnly
    this.svg.classList.toggle('read-only', readOnly)
  }

  schedule () {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render() })
  }

  // -- coordinates -----------------------------------------------------------------

  toCanvas (ev) {
    const r = this.svg.getBoundingClientRect()
    return {
      x: (ev.clientX - r.left - this.view.x) / this.view.zoom,
      y: (ev.clientY - r.top - this.view.y) / this.view.zoom,
    }
  }

  /** The canvas point at the centre of the visible area (where new nodes go). */
  center () {
    const r = this.svg.getBoundingClientRect()
    return {
      x: (r.width / 2 - this.view.x) / this.view.zoom,
      y: (r.height / 2 - this.view.y) / this.view.zoom,
    }
  }

  /** Where a new node goes: the free spot nearest the middle of the view. */
  freeSpot () {
    const c = this.center()
    // From the doc, not the last frame: several adds may come before the next render.
    const boxes = []
    for (const [id, y] of model.roots(this.doc).nodes.entries()) {
      const n = model.readNode(y)
      if (n) boxes.push({ x: n.x, y: n.y, h: this.layout.get(id)?.h ?? 100 })
    }
    const free = (x, y) => boxes.every(b =>
      x + W + 24 <= b.x || x >= b.x + W + 24 || y + 100 <= b.y || y >= b.y + b.h + 24)
    const spots = []
    for (let i = -3; i <= 3; i++) {
      for (let j = -3; j <= 3; j++) spots.push({ x: c.x - W / 2 + i * (W + 48), y: c.y - 50 + j * 130 })
    }
    spots.sort((a, b) => Math.hypot(a.x - c.x, a.y - c.y) - Math.hypot(b.x - c.x, b.y - c.y))
    return spots.find(s => free(s.x, s.y)) || { x: c.x - W / 2, y: c.y - 50 }
  }

  // -- selection -------------------------------------------------------------------

  select (nodeId, edgeId = null) {
    const changed = nodeId !== this.selectedNode || edgeId !== this.selectedEdge
    this.selectedNode = nodeId
    this.selectedEdge = edgeId
    if (!changed) return
    this.awareness.setLocalStateField('selected', nodeId ? [nodeId] : [])
    this.onSelect(nodeId)
    this.schedule()
  }

  deleteSelection () {
    if (this.readOnly) return
    if (this.selectedEdge) {
      model.deleteEdge(this.doc, this.selectedEdge)
      this.select(this.selectedNode, null)
    } else if (this.selectedNode) {
      model.deleteNode(this.doc, this.selectedNode)
      this.select(null)
    }
  }

  key (ev) {
    const t = ev.target
    if (t && (t.closest?.('input, textarea, select, [contenteditable]'))) return
    if (ev.key === 'Delete' || ev.key === 'Backspace') {
      if (this.selectedEdge || this.selectedNode) {
        ev.preventDefault()
        this.deleteSelection()
      }
    } else if (ev.key === 'Escape') {
      this.select(null)
    }
  }

  // -- pointer input ----------------------------------------------------------------

  pointerDown (ev) {
    if (ev.button !== 0) return
    this.svg.focus({ preventScroll: true })
    const p = this.toCanvas(ev)
    const socketEl = ev.target.closest('[data-socket]')
    const nodeEl = ev.target.closest('[data-node-id]')
    const edgeEl = ev.target.closest('[data-edge-id]')
    if (socketEl && nodeEl && !this.readOnly) {
      this.gesture = {
        kind: 'connect',
        node: nodeEl.dataset.nodeId,
        socket: socketEl.dataset.socket,
        dir: socketEl.dataset.dir,
      }
    } else if (nodeEl) {
      const id = nodeEl.dataset.nodeId
      const at = this.layout.get(id)
      this.select(id)
      if (!this.readOnly && at) {
        this.gesture = { kind: 'drag', node: id, dx: p.x - at.x, dy: p.y - at.y, start: p, moved: false }
      }
    } else if (edgeEl) {
      this.select(null, edgeEl.dataset.edgeId)
    } else {
      this.select(null)
      this.gesture = { kind: 'pan', x: ev.clientX, y: ev.clientY }
    }
    if (this.gesture) this.svg.setPointerCapture(ev.pointerId)
  }

  pointerMove (ev) {
    const p = this.toCanvas(ev)
    this.sendPointer({ x: Math.round(p.x), y: Math.round(p.y) })
    const g = this.gesture
    if (!g) return
    if (g.kind === 'drag') {
      if (!g.moved && Math.hypot(p.x - g.start.x, p.y - g.start.y) * this.view.zoom < CLICK_SLOP_PX) return
      if (!g.moved) {
        g.moved = true
        this.awareness.setLocalStateField('dragging', g.node)
      }
      this.writeMove(g.node, p.x - g.dx, p.y - g.dy)
    } else if (g.kind === 'connect') {
      g.to = p
      this.drawDraft()
    } else if (g.kind === 'pan') {
      this.view.x += ev.clientX - g.x
      this.view.y += ev.clientY - g.y
      g.x = ev.clientX
      g.y = ev.clientY
      this.applyView(true)
    }
  }

  pointerUp (ev) {
    const g = this.gesture
    this.gesture = null
    if (!g) return
    if (this.svg.hasPointerCapture(ev.pointerId)) this.svg.releasePointerCapture(ev.pointerId)
    if (g.kind === 'drag' && g.moved) {
      this.writeMove.flush()
      this.awareness.setLocalStateField('dragging', null)
    } else if (g.kind === 'connect') {
      setAttr(this.draft, 'd', '')
      const hit = document.elementFromPoint(ev.clientX, ev.clientY)
      const socketEl = hit && hit.closest('[data-socket]')
      const nodeEl = hit && hit.closest('[data-node-id]')
      if (socketEl && nodeEl && socketEl.dataset.dir !== g.dir) {
        const other = { node: nodeEl.dataset.nodeId, socket: socketEl.dataset.socket }
        const [from, to] = g.dir === 'out' ? [g, other] : [other, g]
        const id = model.connect(this.doc, from.node, from.socket, to.node, to.socket)
        if (id) this.select(null, id)
      }
    }
  }

  wheel (ev) {
    ev.preventDefault()
    const r = this.svg.getBoundingClientRect()
    const mx = ev.clientX - r.left
    const my = ev.clientY - r.top
    const zoom = Math.min(3, Math.max(0.25, this.view.zoom * Math.exp(-ev.deltaY * 0.001)))
    // Keep the point under the cursor where it is.
    this.view.x = mx - (mx - this.view.x) * zoom / this.view.zoom
    this.view.y = my - (my - this.view.y) * zoom / this.view.zoom
    this.view.zoom = zoom
    this.applyView(true)
    this.schedule() // pointer tags keep their size
  }

  zoomBy (factor) {
    const r = this.svg.getBoundingClientRect()
    this.wheel({ preventDefault () {}, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2, deltaY: -Math.log(factor) / 0.001 })
  }

  /** Apply the pan/zoom transform; `share` also puts it in our presence. */
  applyView (share = false) {
    const { x, y, zoom } = this.view
    setAttr(this.gView, 'transform', `translate(${x} ${y}) scale(${zoom})`)
    if (share) this.sendViewport({ x: Math.round(x), y: Math.round(y), zoom: Math.round(zoom * 100) / 100 })
  }

  drawDraft () {
    const g = this.gesture
    const at = this.layout.get(g.node)
    if (!at || !g.to) return
    const list = g.dir === 'out' ? at.outputs : at.inputs
    const i = Math.max(0, list.indexOf(g.socket))
    const sx = at.x + (g.dir === 'out' ? W : 0)
    const sy = at.y + socketY(i)
    const [a, b] = g.dir === 'out' ? [{ x: sx, y: sy }, g.to] : [g.to, { x: sx, y: sy }]
    setAttr(this.draft, 'd', curve(a, b))
  }

  // -- rendering -----------------------------------------------------------------------

  render () {
    const { nodes, edges } = model.roots(this.doc)
    const edgeList = []
    for (const [id, y] of edges.entries()) {
      const e = model.readEdge(y)
      if (e) edgeList.push({ id, ...e })
    }
    const others = peers(this.awareness)

    // Nodes
    const seen = new Set()
    for (const [id, y] of nodes.entries()) {
      const node = model.readNode(y)
      if (!node) continue
      seen.add(id)
      this.renderNode(id, node, edgeList, others)
    }
    for (const [id, el] of this.nodeEls) {
      if (!seen.has(id)) { el.g.remove(); this.nodeEls.delete(id); this.layout.delete(id) }
    }
    if (this.selectedNode && !seen.has(this.selectedNode)) this.select(null)

    // Edges (an edge whose node is gone stays in the doc but is not drawn)
    const seenEdges = new Set()
    for (const e of edgeList) {
      const a = this.layout.get(e.source)
      const b = this.layout.get(e.target)
      if (!a || !b) continue
      seenEdges.add(e.id)
      this.renderEdge(e, a, b)
    }
    for (const [id, el] of this.edgeEls) {
      if (!seenEdges.has(id)) { el.remove(); this.edgeEls.delete(id) }
    }
    if (this.selectedEdge && !seenEdges.has(this.selectedEdge)) this.select(this.selectedNode, null)

    this.renderPointers(others)
    this.applyView()
  }

  renderNode (id, node, edgeList, others) {
    let el = this.nodeEls.get(id)
    if (!el) {
      el = {
        g: svg('g', { class: 'node', 'data-node-id': id }),
        bg: svg('rect', { class: 'node-bg', width: W, rx: 7 }),
        head: svg('path', { class: 'node-head' }),
        title: svg('text', { class: 'node-title', x: 10, y: 17 }),
        type: svg('text', { class: 'node-type', x: W - 10, y: 17, 'text-anchor': 'end' }),
        params: svg('g', { class: 'node-params' }),
        sockets: svg('g', { class: 'node-sockets' }),
        outlines: svg('g', { class: 'node-outlines' }),
        markers: svg('g', { class: 'node-markers' }),
        key: '',
      }
      el.g.append(el.outlines, el.bg, el.head, el.title, el.type, el.params, el.sockets, el.markers)
      this.gNodes.append(el.g)
      this.nodeEls.set(id, el)
    }
    const sockets = nodeSockets(id, node, edgeList)
    const rows = Object.entries(node.params)
    const h = nodeHeight(rows.length, sockets)
    this.layout.set(id, { x: node.x, y: node.y, h, ...sockets })

    setAttr(el.g, 'transform', `translate(${node.x} ${node.y})`)
    el.g.classList.toggle('selected', this.selectedNode === id)
    el.g.dataset.type = node.type
    setAttr(el.bg, 'height', h)
    setAttr(el.head, 'd', `M0 7a7 7 0 0 1 7-7h${W - 14}a7 7 0 0 1 7 7v${HEADER - 7}h-${W}z`)
    setText(el.title, node.label || node.type)
    setText(el.type, node.label ? node.type : '')

    // Parameters and sockets change rarely: rebuild them only when their content changes.
    const key = JSON.stringify([rows, sockets])
    if (key !== el.key) {
      el.key = key
      const shown = rows.slice(0, rows.length > MAX_ROWS + 1 ? MAX_ROWS : MAX_ROWS + 1)
      el.params.replaceChildren(...shown.map(([k, v], i) => svg('text', { x: 18, y: HEADER + PAD + 12 + i * ROW, 'data-param': k },
        svg('tspan', { class: 'param-key' }, k + ' '), svg('tspan', { class: 'param-value' }, formatValue(v)))),
      rows.length > shown.length
        ? svg('text', { class: 'param-more', x: 18, y: HEADER + PAD + 12 + shown.length * ROW }, `+${rows.length - shown.length} more`)
        : null)
      const socketEls = []
      sockets.inputs.forEach((name, i) => socketEls.push(svg('g', { class: 'socket socket-in', 'data-socket': name, 'data-dir': 'in', transform: `translate(0 ${socketY(i)})` },
        svg('circle', { r: 11, class: 'socket-hit' }), svg('circle', { r: 5.5, class: 'socket-dot' }),
        sockets.inputs.length > 1 || name !== 'in' ? svg('text', { x: -9, y: 4, 'text-anchor': 'end', class: 'socket-label' }, name) : null)))
      sockets.outputs.forEach((name, i) => socketEls.push(svg('g', { class: 'socket socket-out', 'data-socket': name, 'data-dir': 'out', transform: `translate(${W} ${socketY(i)})` },
        svg('circle', { r: 11, class: 'socket-hit' }), svg('circle', { r: 5.5, class: 'socket-dot' }),
        sockets.outputs.length > 1 || name !== 'out' ? svg('text', { x: 9, y: 4, class: 'socket-label' }, name) : null)))
      el.sockets.replaceChildren(...socketEls)
    }

    // Others' selection (coloured outlines) and drags (a name tag above the node).
    const selectors = others.filter(o => o.selected.includes(id))
    const draggers = others.filter(o => o.dragging === id)
    const presenceKey = JSON.stringify([h, selectors.map(o => [o.clientId, o.user.color]), draggers.map(o => [o.clientId, o.user.name, o.user.color])])
    if (presenceKey !== el.presenceKey) {
      el.presenceKey = presenceKey
      el.outlines.replaceChildren(...selectors.map((o, i) => {
        const d = 4 + i * 4
        return svg('rect', {
          class: 'remote-selection', 'data-user-id': o.user.id, x: -d, y: -d, width: W + 2 * d, height: h + 2 * d,
          rx: 7 + d, stroke: o.user.color,
        })
      }))
      el.markers.replaceChildren(...draggers.map((o, i) => {
        const label = `${o.user.name} is moving this`
        const width = 16 + label.length * 6.4
        return svg('g', { class: 'drag-marker', 'data-user-id': o.user.id, transform: `translate(0 ${-24 - i * 22})` },
          svg('rect', { width, height: 19, rx: 9.5, fill: o.user.color }),
          svg('text', { x: 8, y: 13.5 }, label))
      }))
    }
  }

  renderEdge (e, a, b) {
    let el = this.edgeEls.get(e.id)
    if (!el) {
      el = svg('g', { class: 'edge', 'data-edge-id': e.id },
        svg('path', { class: 'edge-hit' }), svg('path', { class: 'edge-line' }))
      this.gEdges.append(el)
      this.edgeEls.set(e.id, el)
    }
    const i = Math.max(0, a.outputs.indexOf(e.sourceSocket))
    const j = Math.max(0, b.inputs.indexOf(e.targetSocket))
    const d = curve({ x: a.x + W, y: a.y + socketY(i) }, { x: b.x, y: b.y + socketY(j) })
    for (const path of el.children) setAttr(path, 'd', d)
    el.dataset.source = e.source
    el.dataset.target = e.target
    el.classList.toggle('selected', this.selectedEdge === e.id)
  }

  renderPointers (others) {
    const seen = new Set()
    for (const o of others) {
      if (!o.pointer) continue
      seen.add(o.clientId)
      let el = this.pointerEls.get(o.clientId)
      if (!el) {
        el = svg('g', { class: 'remote-pointer', 'data-client-id': o.clientId },
          svg('path', { d: 'M0 0 L0 16 L4.5 12 L8 19 L10.5 18 L7 11 L12.5 11 Z' }),
          svg('g', { class: 'pointer-tag', transform: 'translate(12 20)' },
            svg('rect', { height: 18, rx: 4 }), svg('text', { x: 6, y: 13 })))
        this.gPointers.append(el)
        this.pointerEls.set(o.clientId, el)
      }
      el.dataset.userId = o.user.id
      setAttr(el, 'transform', `translate(${o.pointer.x} ${o.pointer.y}) scale(${1 / this.view.zoom})`)
      setAttr(el.firstChild, 'fill', o.user.color)
      const tag = el.lastChild
      setAttr(tag.firstChild, 'fill', o.user.color)
      setAttr(tag.firstChild, 'width', 12 + o.user.name.length * 6.6)
      setText(tag.lastChild, o.user.name)
    }
    for (const [id, el] of this.pointerEls) {
      if (!seen.has(id)) { el.remove(); this.pointerEls.delete(id) }
    }
  }
}

function curve (a, b) {
  const dx = Math.max(40, Math.abs(b.x - a.x) / 2)
  return `M${a.x} ${a.y} C${a.x + dx} ${a.y} ${b.x - dx} ${b.y} ${b.x} ${b.y}`
}
