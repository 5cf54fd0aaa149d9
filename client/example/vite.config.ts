// Vite config for the example React app (`npm run example`): /trpc is proxied to a running skill-views server.
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const server = process.env.SKILL_VIEWS_SERVER ?? 'http://127.0.0.1:3000';
// Same-origin /trpc means no CORS set-up on the server, as in a real BFF deployment.
const proxy = { '/trpc': { target: server, changeOrigin: true } };

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [react()],
  server: { port: 5173, proxy },
  preview: { port: 4173, proxy },
  build: { outDir: 'dist', emptyOutDir: true },
});
