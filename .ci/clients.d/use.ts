// Type-checked (tsc --noEmit) against the types openapi-typescript generated from the served spec.
import type { components, operations, paths } from "./api";

type Task = components["schemas"]["Task"];
type NewTask = components["schemas"]["NewTask"];
type TokenPair = components["schemas"]["TokenPair"];
type Problem = components["schemas"]["Problem"];
type TaskList = paths["/tasks"]["get"]["responses"]["200"]["content"]["application/json"];
type MineQuery = NonNullable<operations["my_tasks"]["parameters"]["query"]>;

// One Task type: what one operation returns, another takes.
const fromCreate: Task = {} as paths["/tasks"]["post"]["responses"]["201"]["content"]["application/json"];
const fromGet: paths["/task/{task_id}"]["get"]["responses"]["200"]["content"]["application/json"] = fromCreate;
const list: TaskList = [fromGet];

export function describe(task: Task): string {
  const due = task.deadline ?? "no deadline";
  return `#${task.id} ${task.title} (${task.status}, ${due})`;
}

export const draft: NewTask = { title: "Plan the week", deadline: "2030-01-15" };
export const pair: TokenPair = { access_token: "a", refresh_token: "r", token_type: "bearer", expires_in: 900 };
export const problem: Problem = { type: "https://tasks.example.com/problems/not_found", title: "Not Found",
  status: 404, detail: "No such task.", code: "not_found" };
export const mine: MineQuery = { status: "in-progress", limit: 20 };
export const summary = list.map(describe);

// The types are real, not `any`: each of these must be an error.
// @ts-expect-error a task's title is a string
export const badTitle: Task["title"] = 42;
// @ts-expect-error /tasks/mine has no assigned_user_id filter
export const badFilter: MineQuery = { assigned_user_id: 3 };
// @ts-expect-error status is one of the three
export const badStatus: Task["status"] = "done";
