// The "saved" indicator, driven by durability acks.
//
// Our server acks a `sync-update` that carries an ack callback once the update is
// committed to the store: {ok: true, seq} or {error: {code, message}} (the stock
// y-socket.io client never asks for one). The Room wraps provider.socket.emit so that
// every sync-update asks, and reports here:
//
//   - an ack outstanding                       -> "Saving…"
//   - all acked                                -> "Saved"
//   - socket disconnected                      -> "Offline — changes kept locally"
//   - an error ack                             -> "Not saved: <message>"
//
// socket.io drops the ack callbacks of packets already sent when the connection drops,
// and edits made offline are buffered. Either way the server gets the content again on
// reconnect (the y-socket.io sync handshake), but without an ack; so we remember that
// something is unconfirmed and, after the reconnect, send our whole state once more as a
// sync-update with an ack (a no-op for the doc, a durability answer for us).

export class SaveTracker {
  constructor (onChange) {
    this.onChange = onChange
    this.inflight = new Map() // ack id -> {confirm: bool}
    this.nextId = 1
    this.connected = false
    this.everConnected = false
    this.unconfirmed = false // some change was sent without an ack we can still receive
    this.error = null // {code, message} of the last refused update, until a confirm succeeds
    this.lastSeq = null
  }

  /** An ack callback for one sync-update emit (`confirm`: a whole-state re-send). */
  track ({ confirm = false } = {}) {
    if (!this.connected) {
      // Buffered by socket.io until reconnect; the confirm after reconnect covers it.
      this.unconfirmed = true
      this.changed()
      return () => {}
    }
    const id = this.nextId++
    this.inflight.set(id, { confirm })
    this.changed()
    return response => this.acked(id, response)
  }

  acked (id, response) {
    const entry = this.inflight.get(id)
    if (!entry) return // forgotten at a disconnect; a confirm covers it
    this.inflight.delete(id)
    if (response && response.error) {
      this.error = response.error
      this.unconfirmed = true
    } else if (response && response.ok) {
      if (response.seq !== null && response.seq !== undefined) this.lastSeq = response.seq
      if (entry.confirm) {
        this.unconfirmed = false
        this.error = null
      }
    }
    this.changed()
  }

  setConnected (connected) {
    if (connected === this.connected) return
    this.connected = connected
    if (connected) {
      this.everConnected = true
    } else if (this.inflight.size > 0) {
      this.unconfirmed = true
      this.inflight.clear()
    }
    this.changed()
  }

  /** Should the Room re-send its whole state with an ack (after a reconnect or refusal)? */
  get needsConfirm () {
    return this.unconfirmed && this.connected &&
      ![...this.inflight.values()].some(e => e.confirm)
  }

  get state () {
    if (!this.connected) {
      return this.everConnected
        ? { kind: 'offline', text: 'Offline — changes kept locally' }
        : { kind: 'connecting', text: 'Connecting…' }
    }
    if (this.error) return { kind: 'error', text: `Not saved: ${this.error.message || this.error.code}` }
    if (this.inflight.size > 0 || this.unconfirmed) return { kind: 'saving', text: 'Saving…' }
    return { kind: 'saved', text: 'Saved' }
  }

  changed () {
    this.onChange(this.state)
  }
}
