// One open project: its Y.Doc, the y-socket.io provider, presence and the save tracker.
//
// The provider is the stock npm `SocketIOProvider`; what our server adds on top is used
// from the outside: sync-update acks (see saving.js), the `error` event, and refusals in
// `connect_error` whose data is {error: {code, message, details}}.
import * as Y from 'yjs'
import { SocketIOProvider } from 'y-socket.io'
import { removeAwarenessStates } from 'y-protocols/awareness'
import { SaveTracker } from './saving.js'

// Errors that are worth one automatic re-send of the whole state after a pause.
const RETRYABLE = new Set(['RATE_LIMITED', 'UNAVAILABLE'])
const RETRY_MS = 3000

export class Room {
  /**
   * @param {object} o
   * @param {string} o.projectId
   * @param {string} o.token
   * @param {{name: string, color: string}} o.user   presence identity (the server stamps id and name)
   * @param {(state: {kind, text}) => void} o.onSaveState
   * @param {(error: {code, message, details}) => void} o.onServerError  `error` events
   * @param {(error: {code, message, details}) => void} o.onRefused       connect refused
   * @param {(lastError: object|null) => void} o.onServerDisconnect    kicked / closed
   */
  constructor ({ projectId, token, user, onSaveState, onServerError, onRefused, onServerDisconnect }) {
    this.projectId = projectId
    this.doc = new Y.Doc()
    this.save = new SaveTracker(onSaveState)
    this.lastError = null
    this.retryTimer = null
    this.provider = new SocketIOProvider(location.origin, projectId, this.doc, {
      autoConnect: false,
      // Tabs of one browser would otherwise relay each other's awareness entries,
      // which the server refuses (an entry belongs to the socket that created it).
      disableBc: true,
      auth: { token },
    })
    this.awareness = this.provider.awareness
    this.awareness.setLocalState({ user, pointer: null, selected: [], dragging: null })

    const socket = this.provider.socket
    const emit = socket.emit.bind(socket)
    // Ask for a durability ack on every sync-update (the provider itself never does).
    socket.emit = (event, ...args) => {
      if (event === 'sync-update' && typeof args[args.length - 1] !== 'function') {
        args.push(this.save.track())
      }
      return emit(event, ...args)
    }
    this.sendConfirm = () => {
      if (!this.save.needsConfirm) return
      emit('sync-update', Y.encodeStateAsUpdate(this.doc), this.save.track({ confirm: true }))
    }

    // Listeners registered after the provider's own: on `connect` its sync-step-1 goes first.
    socket.on('connect', () => {
      this.save.setConnected(true)
      this.sendConfirm()
    })
    socket.on('disconnect', reason => {
      this.save.setConnected(false)
      // The server disconnected us (kick, room closed, token expired): socket.io does
      // not reconnect by itself after that.
      if (reason === 'io server disconnect') onServerDisconnect(this.lastError)
    })
    socket.on('error', payload => {
      const error = (payload && payload.error) || { code: 'ERROR', message: String(payload) }
      this.lastError = error
      onServerError(error)
    })
    this.provider.on('connection-error', err => {
      const refusal = err && err.data && err.data.error
      if (refusal) onRefused(refusal) // a refusal is final: socket.io does not retry it
      // otherwise the transport failed and socket.io keeps retrying: we show "offline"
    })
    const original = this.save.onChange
    this.save.onChange = state => {
      original(state)
      if (state.kind === 'error' && RETRYABLE.has(this.save.error.code) && !this.retryTimer) {
        this.retryTimer = setTimeout(() => { this.retryTimer = null; this.sendConfirm() }, RETRY_MS)
      }
    }
  }

  connect () {
    this.provider.connect()
  }

  /** Reconnect after a server-initiated disconnect. */
  reconnect () {
    this.lastError = null
    this.provider.connect()
  }

  /** Re-send the whole state with an ack (the "Retry" of a "Not saved" indicator). */
  retrySave () {
    this.save.unconfirmed = true
    this.sendConfirm()
  }

  get clientId () {
    return this.doc.clientID
  }

  destroy () {
    clearTimeout(this.retryTimer)
    // Say goodbye to the others (the provider's destroy() does not send it).
    removeAwarenessStates(this.awareness, [this.doc.clientID], 'leave')
    this.provider.destroy()
    this.doc.destroy()
  }
}
