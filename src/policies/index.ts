export { planPolicies, functionName, POLICY_NAMES, type PolicyPlan, type TablePlan, type PlanOptions, type PolicyName } from './build.ts';
export { applyPolicies, dropPolicies, policyScript, type PolicyReport } from './install.ts';
export { coercedParamText, settingParam, HELPERS } from './helpers.ts';
