package callback

// Commands of the Seed protocol, sent as the command query parameter. A
// Dispatcher sends any non-empty command; these are the seed design's.
const (
	// MessageSendBefore is a Before command: a user sends a message.
	MessageSendBefore = "message.send.before"
	// FriendAddBefore is a Before command: a user asks to add a friend.
	FriendAddBefore = "friend.add.before"
	// FriendUpdateBefore is a Before command: a user changes a friend's
	// details (remark, tags).
	FriendUpdateBefore = "friend.update.before"
	// GroupMemberAddBefore is a Before command: members are to be added to
	// a group. The App backend may answer a rewritten member list in data.
	GroupMemberAddBefore = "group.member.add.before"

	// MessageSendAfter is an After command: a message was sent.
	MessageSendAfter = "message.send.after"
	// UserModifyAfter is an After command: a user changed their profile.
	UserModifyAfter = "user.modify.after"
	// FriendAddAfter is an After command: a friendship was made.
	FriendAddAfter = "friend.add.after"
	// FriendUpdateAfter is an After command: a friend's details changed.
	FriendUpdateAfter = "friend.update.after"
	// FriendDeleteAfter is an After command: a friendship was removed.
	FriendDeleteAfter = "friend.delete.after"
	// BlackAddAfter is an After command: a user was added to a blacklist.
	BlackAddAfter = "black.add.after"
	// BlackDeleteAfter is an After command: a user was removed from a
	// blacklist. Its value, "black.delete" without ".after", is the seed
	// design's, kept so that existing App backends keep working.
	BlackDeleteAfter = "black.delete"
	// GroupCreateAfter is an After command: a group was created.
	GroupCreateAfter = "group.create.after"
	// GroupUpdateAfter is an After command: a group's details changed.
	GroupUpdateAfter = "group.update.after"
	// GroupDestroyAfter is an After command: a group was dissolved. Its
	// value, "group.destory.after" (sic), is the seed design's spelling,
	// kept so that existing App backends keep working.
	GroupDestroyAfter = "group.destory.after"
	// GroupTransferAfter is an After command: a group's owner changed.
	GroupTransferAfter = "group.transfer.after"
	// GroupMemberAddAfter is an After command: members joined a group.
	GroupMemberAddAfter = "group.member.add.after"
	// GroupMemberDeleteAfter is an After command: members left or were
	// removed from a group.
	GroupMemberDeleteAfter = "group.member.delete.after"
)

// Commands of the Tencent protocol, sent as the CallbackCommand query
// parameter (Tencent's bodies repeat it as "CallbackCommand").
const (
	// TencentSnsPrevFriendAdd is a Before command: a user asks to add a
	// friend.
	TencentSnsPrevFriendAdd = "Sns.CallbackPrevFriendAdd"
	// TencentSnsPrevFriendResponse is a Before command: a user answers a
	// friend request.
	TencentSnsPrevFriendResponse = "Sns.CallbackPrevFriendResponse"
	// TencentC2CBeforeSendMsg is a Before command: a one-to-one message is
	// to be sent. The App backend may rewrite MsgBody and CloudCustomData.
	TencentC2CBeforeSendMsg = "C2C.CallbackBeforeSendMsg"
	// TencentGroupBeforeCreateGroup is a Before command: a group is to be
	// created.
	TencentGroupBeforeCreateGroup = "Group.CallbackBeforeCreateGroup"
	// TencentGroupBeforeApplyJoinGroup is a Before command: a user asks to
	// join a group.
	TencentGroupBeforeApplyJoinGroup = "Group.CallbackBeforeApplyJoinGroup"
	// TencentGroupBeforeInviteJoinGroup is a Before command: users are
	// invited into a group. The App backend may refuse some of them with
	// RefusedMembers_Account.
	TencentGroupBeforeInviteJoinGroup = "Group.CallbackBeforeInviteJoinGroup"
	// TencentGroupBeforeSendMsg is a Before command: a group message is to
	// be sent. The App backend may rewrite MsgBody and CloudCustomData.
	TencentGroupBeforeSendMsg = "Group.CallbackBeforeSendMsg"
	// TencentGroupBeforeCreateTopic is a Before command: a topic is to be
	// created in a community group.
	TencentGroupBeforeCreateTopic = "Group.CallbackBeforeCreateTopic"

	// TencentStateChange is an After command: a user went online or offline.
	TencentStateChange = "State.StateChange"
	// TencentProfilePortraitSet is an After command: a user changed their
	// profile.
	TencentProfilePortraitSet = "Profile.CallbackPortraitSet"
	// TencentSnsFriendAdd is an After command: a friendship was made.
	TencentSnsFriendAdd = "Sns.CallbackFriendAdd"
	// TencentSnsFriendDelete is an After command: a friendship was removed.
	TencentSnsFriendDelete = "Sns.CallbackFriendDelete"
	// TencentSnsBlackListAdd is an After command: users were blacklisted.
	TencentSnsBlackListAdd = "Sns.CallbackBlackListAdd"
	// TencentSnsBlackListDelete is an After command: users were removed
	// from a blacklist.
	TencentSnsBlackListDelete = "Sns.CallbackBlackListDelete"
	// TencentC2CAfterSendMsg is an After command: a one-to-one message was
	// sent.
	TencentC2CAfterSendMsg = "C2C.CallbackAfterSendMsg"
	// TencentC2CAfterMsgReport is an After command: one-to-one messages
	// were read (read receipt).
	TencentC2CAfterMsgReport = "C2C.CallbackAfterMsgReport"
	// TencentC2CAfterMsgWithDraw is an After command: a one-to-one message
	// was recalled.
	TencentC2CAfterMsgWithDraw = "C2C.CallbackAfterMsgWithDraw"
	// TencentGroupAfterCreateGroup is an After command: a group was created.
	TencentGroupAfterCreateGroup = "Group.CallbackAfterCreateGroup"
	// TencentGroupAfterNewMemberJoin is an After command: members joined a
	// group.
	TencentGroupAfterNewMemberJoin = "Group.CallbackAfterNewMemberJoin"
	// TencentGroupAfterMemberExit is an After command: members left or were
	// removed from a group.
	TencentGroupAfterMemberExit = "Group.CallbackAfterMemberExit"
	// TencentGroupAfterSendMsg is an After command: a group message was
	// sent.
	TencentGroupAfterSendMsg = "Group.CallbackAfterSendMsg"
	// TencentGroupAfterGroupFull is an After command: a group reached its
	// member limit.
	TencentGroupAfterGroupFull = "Group.CallbackAfterGroupFull"
	// TencentGroupAfterGroupDestroyed is an After command: a group was
	// dissolved.
	TencentGroupAfterGroupDestroyed = "Group.CallbackAfterGroupDestroyed"
	// TencentGroupAfterGroupInfoChanged is an After command: a group's
	// details changed.
	TencentGroupAfterGroupInfoChanged = "Group.CallbackAfterGroupInfoChanged"
	// TencentGroupAfterChangeGroupOwner is an After command: a group's
	// owner changed.
	TencentGroupAfterChangeGroupOwner = "Group.CallbackAfterChangeGroupOwner"
)
