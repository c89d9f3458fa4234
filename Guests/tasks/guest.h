/* tasks: the 32-bit protected-mode excursion (tasks.S) and what it observed. */
#include <stdint.h>

/* Leaves long mode, runs the task-switch checks in 32-bit protected mode, comes back. */
void tasks_run32(void);
/* Observations, one slot per fact (Tasks.swift names the slots). */
extern uint32_t tasks_obs[48];
extern char tasks_df_instruction[], tasks_df_resume[], tasks_b_resume[];

static inline uint32_t tasks_observed(int slot) { return tasks_obs[slot]; }
static inline uint32_t tasks_df_instruction_address(void) { return (uint32_t)(uint64_t)tasks_df_instruction; }
static inline uint32_t tasks_b_resume_address(void) { return (uint32_t)(uint64_t)tasks_b_resume; }
