// Builds the browser pages into collab/web/dist (index.html = editor, admin.html).
// Placeholder until the editor lands: copies static HTML only.
import { mkdirSync, existsSync, cpSync } from 'node:fs'
const out = new URL('../collab/web/dist/', import.meta.url)
mkdirSync(out, { recursive: true })
if (existsSync(new URL('./static/', import.meta.url))) cpSync(new URL('./static/', import.meta.url), out, { recursive: true })
