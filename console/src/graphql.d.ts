// Operation documents are .graphql files bundled as text (esbuild's text loader), so the
// build can validate each one against schema.graphql before it bundles (build.mjs).
declare module "*.graphql" {
  const document: string;
  export default document;
}
