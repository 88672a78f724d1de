// .wgsl files are imported as their text (esbuild's text loader; tools/ts-hooks.mjs in tests).
declare module '*.wgsl' {
  const source: string;
  export default source;
}
