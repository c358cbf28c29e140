// Builds the browser pages into collab/web/dist:
//   index.html  the node-graph editor (served at /)
//   admin.html  the admin dashboard (served at /admin)
//   assets/     the bundles (yjs, y-socket.io and socket.io-client included) and CSS,
//               content-hashed so that a rebuilt page never runs a stale cached script.
//
// Usage: node web/build.mjs [--watch]     (npm run build)
import { build, context } from 'esbuild'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')
const dist = join(root, 'collab', 'web', 'dist')
const assets = join(dist, 'assets')

const pages = [
  { entry: 'editor', html: 'index.html', title: 'collab' },
  { entry: 'admin', html: 'admin.html', title: 'collab admin' },
]

const options = {
  absWorkingDir: root,
  entryPoints: Object.fromEntries(pages.map(p => [p.entry, join(here, 'src', p.entry, 'main.js')])),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: assets,
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  splitting: true, // the two pages share the REST client, sign-in and styles
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning',
  legalComments: 'linked',
}

/** Write one HTML page per entry, pointing at its hashed script and stylesheet. */
function writePages (metafile) {
  const template = readFileSync(join(here, 'src', 'page.html'), 'utf8')
  for (const page of pages) {
    const [out, info] = Object.entries(metafile.outputs)
      .find(([, o]) => o.entryPoint && basename(dirname(o.entryPoint)) === page.entry)
    const script = '/assets/' + relative(assets, join(root, out))
    const css = info.cssBundle ? '/assets/' + relative(assets, join(root, info.cssBundle)) : null
    const html = template
      .replaceAll('%TITLE%', page.title)
      .replace('%STYLE%', css ? `<link rel="stylesheet" href="${css}">` : '')
      .replace('%SCRIPT%', `<script type="module" src="${script}"></script>`)
    writeFileSync(join(dist, page.html), html)
  }
}

rmSync(dist, { recursive: true, force: true })
mkdirSync(assets, { recursive: true })

if (process.argv.includes('--watch')) {
  const ctx = await context({
    ...options,
    plugins: [{ name: 'pages', setup (b) { b.onEnd(r => { if (r.metafile) writePages(r.metafile) }) } }],
  })
  await ctx.watch()
  console.log('watching web/src for changes')
} else {
  const result = await build(options)
  writePages(result.metafile)
}
