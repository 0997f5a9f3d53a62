#!/usr/bin/env node
// Entry point for the installed package: runs the compiled CLI (npm run build makes dist/).
import('../dist/main.js');
