// The palette: node types with their sockets and default parameters.
//
// Socket convention: inputs on the left, outputs on the right; an edge stores the socket
// names (sourceSocket is an output of `source`, targetSocket an input of `target`).
// Types we do not know (written by other clients) get one `in` and one `out`.

export const NODE_TYPES = {
  Cube: { inputs: [], outputs: ['out'], params: { size: 1, center: true } },
  Sphere: { inputs: [], outputs: ['out'], params: { radius: 1, segments: 24 } },
  Transform: { inputs: ['in'], outputs: ['out'], params: { tx: 0, ty: 0, tz: 0, rotate: 0 } },
  Scale: { inputs: ['in'], outputs: ['out'], params: { factor: 2, uniform: true } },
  Merge: { inputs: ['a', 'b'], outputs: ['out'], params: { mode: 'union' } },
  Output: { inputs: ['in'], outputs: [], params: { name: 'result' } },
}

const UNKNOWN = { inputs: ['in'], outputs: ['out'], params: {} }

export function typeInfo (type) {
  return NODE_TYPES[type] || UNKNOWN
}
