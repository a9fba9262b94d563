// Minimal declaration of the runtime module the example imports (workerd provides it).
declare module "cloudflare:workers" {
  export class DurableObject<Env = unknown> {
    ctx: any;
    env: Env;
    constructor(ctx: any, env: Env);
    fetch?(req: Request): Promise<Response>;
    alarm?(): Promise<void>;
  }
}
